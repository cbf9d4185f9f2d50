"""How SNAC trains: the loss, the program (plain or GAN), the curriculum data and the
starting weights. ``tokenizer.snac.train`` wires them to the shared loop.

Batches (``common.data.pipeline``, segment mode): ``audio [B, N, 1]`` cropped to the
stage's segment (shorter utterances left-padded), ``audio_valid [B, N]``,
``audio_lengths [B]``. The codec pads N on the right to its multiple and the
reconstruction is cut back, so every loss sees the batch's N samples and its mask.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from common.audio import STFTConfig
from common.config import config_from_dict
from common.data.curriculum import CurriculumIterator
from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.sources import open_source
from common.losses.regression import l1_loss
from common.losses.spectral import multi_resolution_stft_loss, multi_scale_mel_loss
from common.train.checkpoint import load_model
from common.train.gan import disc_optim, gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from tokenizer.snac.model import SNAC
from tokenizer.snac.train_config import SnacConfig

log = logging.getLogger(__name__)


def reconstruction_loss(recon: jax.Array, target: jax.Array, lengths: jax.Array,
                        cfg: SnacConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``recon, target [B, N, 1]`` (left-padded, ``lengths [B]`` valid samples) -> the
    weighted L1 + multi-resolution STFT (+ mel) loss and its unweighted terms."""
    lc, total, metrics = cfg.loss, jnp.float32(0.0), {}
    n = target.shape[1]
    if lc.waveform:
        valid = jnp.arange(n)[None, :] >= (n - lengths)[:, None]
        wav, _ = l1_loss(recon[..., 0], target[..., 0], valid)
        total, metrics["wav_l1"] = total + lc.waveform * wav, wav
    if lc.stft:
        res = tuple(STFTConfig(n_fft=f, hop_length=f // 4) for f in lc.stft_ffts)
        stft, _ = multi_resolution_stft_loss(recon, target, resolutions=res, lengths=lengths,
                                             padding_side="left")
        total, metrics["stft"] = total + lc.stft * stft, stft
    if lc.mel:
        mel, _ = multi_scale_mel_loss(recon, target, sample_rate=cfg.model.sampling_rate,
                                      lengths=lengths, padding_side="left")
        total, metrics["mel"] = total + lc.mel * mel, mel
    return total, metrics


def codec_loss(codec: SNAC, batch: Mapping[str, jax.Array], key: jax.Array | None,
               cfg: SnacConfig) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Forward pass and non-adversarial loss: ``(recon [B, N, 1], loss, metrics)``."""
    wav = batch["audio"]
    lengths = batch.get("audio_lengths")
    if lengths is None:
        lengths = jnp.sum(batch["audio_valid"], axis=-1, dtype=jnp.int32)
    n = wav.shape[1]
    if cfg.decoder_only:  # frozen encoder and quantizer: no gradient through them
        z = jax.lax.stop_gradient(codec.encoder(codec.pad(wav)))
        quant = jax.tree.map(jax.lax.stop_gradient, codec.quantizer(z))
    else:
        z = codec.encoder(codec.pad(wav))
        quant = codec.quantizer(z)
    # Noise blocks (``model.noise``) are driven in training, as the original always does.
    noise_key = key if cfg.model.noise else None
    recon = codec.decoder(quant.z_q, noise_key)[:, :n].astype(jnp.float32)
    loss, metrics = reconstruction_loss(recon, wav, lengths, cfg)
    if not cfg.decoder_only:
        commit, book = jnp.mean(quant.commitment), jnp.mean(quant.codebook)
        loss = loss + cfg.loss.commitment * commit + cfg.loss.codebook * book
        metrics.update(commitment=commit, codebook=book)
    for level, codes in enumerate(quant.codes):  # share of the codebook a batch uses
        used = jnp.zeros((cfg.model.codebook_size,), bool).at[codes.reshape(-1)].set(True)
        metrics[f"q/used_{level}"] = jnp.mean(used.astype(jnp.float32))
    return recon, loss, metrics


# ---------------------------------------------------------------------- weights


def initial_weights(cfg: SnacConfig) -> tuple[SnacConfig, nnx.State | None]:
    """``(cfg with the starting model's config, its weights or None)`` for ``init_from``:
    a run directory (converted or trained) or a published PyTorch model folder."""
    if not cfg.init_from:
        return cfg, None
    src = Path(cfg.init_from)
    if (src / "checkpoints").is_dir():
        model, d = load_model(src, lambda d: SNAC(config_from_dict(SnacConfig, d).model,
                                                  rngs=nnx.Rngs(0)))
        model_cfg = config_from_dict(SnacConfig, d).model
    else:
        from tokenizer.snac.pytorch_weights import load_pretrained

        model = load_pretrained(src)
        model_cfg = model.cfg
    model_cfg = dataclasses.replace(model_cfg, dtype=cfg.model.dtype)
    log.info("starting from %s (%d Hz, strides %s)", src, model_cfg.sampling_rate,
             model_cfg.vq_strides)
    return dataclasses.replace(cfg, model=model_cfg), nnx.state(model, nnx.Param)


def freeze_patterns(cfg: SnacConfig) -> tuple[str, ...]:
    """``optim.freeze`` regexes of the frozen parts (parameter paths start with them)."""
    return tuple(f"^{part}/" for part in cfg.freeze)


def build_program(cfg: SnacConfig, weights: nnx.State | None = None) -> Program:
    """The training ``Program``: the codec alone (L1 + STFT + quantizer losses), or with
    ``cfg.adversarial`` the GAN of ``common.train.gan`` with the shared discriminators
    (``tokenizer.codec.discriminators``)."""

    def build(rngs: nnx.Rngs) -> SNAC:
        codec = SNAC(cfg.model, rngs=rngs)
        if weights is not None:
            nnx.update(codec, weights)
        return codec

    optim = resolve_optim(cfg.train)
    optim = dataclasses.replace(optim, freeze=tuple(optim.freeze) + freeze_patterns(cfg))
    if not cfg.adversarial:
        def loss_fn(codec, batch, key):
            _, loss, metrics = codec_loss(codec, batch, key, cfg)
            return loss, metrics

        return supervised_program(build, loss_fn, make_optimizer(optim), seed=cfg.train.seed,
                                  grad_accum=cfg.train.grad_accum)
    from tokenizer.codec.discriminators import Discriminator, gan_disc_fn

    def gen_fn(codec, batch, key):
        recon, loss, metrics = codec_loss(codec, batch, key, cfg)
        # The valid mask keeps the left padding out of the GAN losses.
        return recon, batch["audio"], loss, metrics, batch.get("audio_valid")

    return gan_program(build, lambda rngs: Discriminator(cfg.disc, rngs=rngs), gen_fn,
                       gan_disc_fn, make_optimizer(optim),
                       make_optimizer(disc_optim(cfg.train, cfg.disc_optim, cfg.gan)), cfg.gan,
                       seed=cfg.train.seed, grad_accum=cfg.train.grad_accum)


# ---------------------------------------------------------------------- data


def resolve_data(cfg: SnacConfig) -> SnacConfig:
    """The default corpus's path (built on first use) at the model's rate."""
    source = cfg.data.source
    if source.kind == "corpus" and not source.path:
        from common.data.corpus import default_corpus

        root = default_corpus(sample_rate=cfg.model.sampling_rate, hours=source.corpus_hours,
                              holdout_speakers=source.corpus_holdout_speakers)
        source = dataclasses.replace(source, path=str(root),
                                     corpus_sample_rate=cfg.model.sampling_rate)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=source))


def stage_pipeline(cfg: SnacConfig, seconds: float, batch_size: int) -> PipelineConfig:
    data = cfg.data
    return PipelineConfig(
        sample_rate=cfg.model.sampling_rate, batch_size=batch_size, segment_seconds=seconds,
        # Segments of whole codec pad multiples: the codec then pads nothing.
        max_seconds=seconds, bucket_seconds=(seconds,), frame_hops=(cfg.model.pad_multiple,),
        loudness_dbfs=data.loudness_dbfs, seed=cfg.train.seed, worker_count=data.workers,
        bad_input=data.source.bad_input)


def make_data(cfg: SnacConfig) -> tuple[CurriculumIterator, Callable[[], Iterator[dict]]]:
    """``(curriculum train iterator, eval iterator factory)`` for a resolved config."""
    cur = cfg.curriculum
    train_source = open_source(cfg.data.source, cfg.data.train_split)
    eval_source = open_source(cfg.data.source, cfg.data.eval_split)
    log.info("data: %d train / %d eval utterances; curriculum %s", len(train_source),
             len(eval_source), ", ".join(
                 f"{s:g} s x {cfg.data.batch_size * m}" for s, m in
                 zip(cur.seconds, cur.batch_multipliers, strict=True)))
    builders = [
        (lambda s=s, m=m: make_pipeline(train_source,
                                        stage_pipeline(cfg, s, cfg.data.batch_size * m)))
        for s, m in zip(cur.seconds, cur.batch_multipliers, strict=True)]
    eval_cfg = dataclasses.replace(
        stage_pipeline(cfg, cfg.data.eval_seconds or cur.seconds[-1], cfg.data.batch_size),
        worker_count=0)
    return (CurriculumIterator(builders, cur.steps),
            lambda: iterate_eval(eval_source, eval_cfg))
