"""The vocoder's loss and program: mel frames of the batch's audio (the front end the
CVAE predicts) -> the generator (Vocos, or HiFi-GAN's) -> waveform, scored against the
audio by a log-mel L1 and a multi-resolution STFT loss; with ``adversarial``
(``--gan``) the GAN of ``common.train.gan`` with the codecs' discriminators
(``tokenizer.codec``) on top.

Batches (``common.data.pipeline``, segment mode): ``audio [B, N, 1]`` left-padded,
``audio_lengths [B]``, N a multiple of the hop. The mel has ``T = 1 + N / hop`` frames,
the last (centred on sample N) invalid, so the waveform's valid samples are the last
``(valid frames) * hop`` of the N: the losses score exactly those.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from common.audio import STFTConfig
from common.losses.spectral import mel_l1_loss, multi_resolution_stft_loss, sample_mask
from common.speech.features import log_mel_frames
from common.train.gan import disc_optim, gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.audio.vocoder.config import VocoderConfig
from worldmodel.audio.vocoder.hifigan import HifiGan
from worldmodel.audio.vocoder.vocos import Vocos

Generator = Vocos | HifiGan


def build_generator(cfg: VocoderConfig, rngs: nnx.Rngs) -> Generator:
    """The config's generator (``cfg.generator``): ``Vocos`` or ``HifiGan``."""
    if cfg.generator == "hifigan":
        return HifiGan(cfg.hifigan, rngs=rngs)
    return Vocos(cfg.model, rngs=rngs)


def load_generator(run) -> tuple[Generator, VocoderConfig]:
    """A trained vocoder's generator (its EMA weights where the run kept them) and its
    config, from the run directory."""
    from common.config import config_from_dict
    from common.train.checkpoint import load_model

    model, d = load_model(run, lambda d: build_generator(config_from_dict(VocoderConfig, d),
                                                         nnx.Rngs(0)), item=("ema", "model"))
    return model, config_from_dict(VocoderConfig, d)


def _fit(x: jax.Array, n: int) -> jax.Array:
    """``x [B, L]`` cut or right-padded (zeros / False) to ``[B, n]``."""
    if x.shape[1] >= n:
        return x[:, :n]
    return jnp.pad(x, ((0, 0), (0, n - x.shape[1])))


def vocode(model: Generator, cfg: VocoderConfig, audio: jax.Array, lengths: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """``audio [B, N]`` or ``[B, N, 1]`` left-padded, ``lengths [B]`` -> ``(wav [B, N]
    float32, valid_lengths [B])``: the waveform re-synthesised from the audio's mel,
    its valid samples the last ``valid_lengths`` (whole hops of valid mel frames)."""
    n = audio.shape[1]
    # The front end zeroes invalid frames, but a valid frame's window reaches into the
    # padding: zero the padded samples so their content cannot reach the mel.
    audio = audio[..., 0] if audio.ndim == 3 else audio
    audio = jnp.where(sample_mask(lengths, n, "left"), audio, 0.0)
    mel, valid = log_mel_frames(cfg.features, audio, lengths)
    return mel_to_wave(model, mel, valid, n)


def mel_to_wave(model: Generator, mel: jax.Array, valid: jax.Array, n: int
                ) -> tuple[jax.Array, jax.Array]:
    """``mel [B, T, n_mels]``, ``valid [B, T]`` (left-padded front-end frames of ``n``
    samples, ``T = 1 + n // hop``) -> ``(wav [B, n] float32, valid_lengths [B])``: the
    waveform on the audio's time grid, its valid samples the last ``valid_lengths``."""
    wav, wav_valid = model(mel, valid)
    return _fit(wav, n), jnp.sum(_fit(wav_valid, n), axis=1, dtype=jnp.int32)


def reconstruction_loss(pred: jax.Array, target: jax.Array, lengths: jax.Array,
                        cfg: VocoderConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``pred, target [B, N]`` left-padded with ``lengths [B]`` valid samples ->
    ``mel * mel_l1 + stft * mr_stft`` and the unweighted terms (``mel``, ``stft``)."""
    f, lc = cfg.features, cfg.loss
    mel, _ = mel_l1_loss(pred, target, sample_rate=f.sample_rate, n_fft=f.n_fft,
                         hop_length=f.hop_length, win_length=f.win_length, n_mels=f.n_mels,
                         fmin=f.fmin, fmax=f.fmax, lengths=lengths, padding_side="left")
    res = tuple(STFTConfig(n_fft=k, hop_length=k // 4) for k in lc.stft_ffts)
    stft, _ = multi_resolution_stft_loss(pred, target, resolutions=res, lengths=lengths,
                                         padding_side="left")
    return lc.mel * mel + lc.stft * stft, {"mel": mel, "stft": stft}


def vocoder_loss(model: Generator, batch: Mapping[str, jax.Array], cfg: VocoderConfig):
    """``(wav [B, N], target [B, N], valid [B, N], loss, metrics)`` of a batch."""
    target = batch["audio"][..., 0].astype(jnp.float32)
    wav, lengths = vocode(model, cfg, target, batch["audio_lengths"])
    loss, metrics = reconstruction_loss(wav, target, lengths, cfg)
    valid = sample_mask(lengths, target.shape[1], "left")
    return wav, target, valid, loss, metrics


def build_program(cfg: VocoderConfig) -> Program:
    """The training ``Program``: the generator with the spectral losses (supervised), or with
    ``cfg.adversarial`` the GAN with the shared discriminators."""
    build = lambda rngs: build_generator(cfg, rngs)
    tx = make_optimizer(resolve_optim(cfg.train))
    if not cfg.adversarial:
        def loss_fn(model, batch, key):
            del key
            return vocoder_loss(model, batch, cfg)[3:]

        return supervised_program(build, loss_fn, tx, seed=cfg.train.seed,
                                  grad_accum=cfg.train.grad_accum)
    from tokenizer.codec.discriminators import Discriminator, gan_disc_fn

    def gen_fn(model, batch, key):
        del key
        wav, target, valid, loss, metrics = vocoder_loss(model, batch, cfg)
        return wav[..., None], target[..., None], loss, metrics, valid

    disc_tx = make_optimizer(disc_optim(cfg.train, cfg.disc_optim, cfg.gan))
    return gan_program(build, lambda rngs: Discriminator(cfg.disc, rngs=rngs), gen_fn,
                       gan_disc_fn, tx, disc_tx, cfg.gan, seed=cfg.train.seed,
                       grad_accum=cfg.train.grad_accum)

