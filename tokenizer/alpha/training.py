"""How the alpha codec trains: the GAN program (generator and discriminator functions,
optimizers) and what gets logged. ``tokenizer.alpha.train`` wires it to data and the loop.

Batches are host dicts from ``common.data.pipeline``: ``audio [B, N, 1]`` (left-padded),
``audio_valid [B, N]``, ``audio_lengths [B]``, and for the CTC stage ``phonemes [B, L]``
with ``phonemes_valid [B, L]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.audio import log_mel_spectrogram
from common.train.gan import gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.losses.generator_loss import generator_loss
from tokenizer.alpha.model import AlphaCodec
from tokenizer.codec.discriminators import Discriminator


def codec_loss(codec: AlphaCodec, batch: Mapping[str, jax.Array], key: jax.Array | None,
               cfg: AlphaConfig):
    """Forward pass and non-adversarial loss: ``(recon [B, N, 1], loss, metrics)``."""
    wav, valid = batch["audio"], batch["audio_valid"]
    out = codec(wav, valid, key=key)
    lengths = batch.get("audio_lengths")
    if lengths is None:
        lengths = jnp.sum(valid, axis=-1, dtype=jnp.int32)
    loss, metrics = generator_loss(
        out.recon, wav, lengths, out.quant.losses, sample_rate=cfg.sample_rate, cfg=cfg.loss,
        # CTC only on the phoneme codebook (other quantizers' logits are not phonemes)
        logits=out.quant.logits if cfg.quantizer.kind == "phoneme_bsq" else None,
        frame_valid=out.frame_valid,
        phonemes=batch.get("phonemes"), phonemes_valid=batch.get("phonemes_valid"))
    metrics.update({f"q/{k}": v for k, v in out.quant.metrics.items()})
    return out.recon, loss, metrics


def build_program(cfg: AlphaConfig) -> Program:
    """The GAN ``Program`` for ``common.train.loop.train``: generator ``AlphaCodec``,
    ``Discriminator``, both AdamW (``train.optim`` and ``disc_optim``)."""

    def gen_fn(codec, batch, key):
        recon, loss, metrics = codec_loss(codec, batch, key, cfg)
        return recon, batch["audio"], loss, metrics

    def disc_fn(disc, wav):
        return disc(wav)

    return gan_program(
        lambda rngs: AlphaCodec(cfg, rngs=rngs),
        lambda rngs: Discriminator(cfg.disc, rngs=rngs),
        gen_fn, disc_fn,
        make_optimizer(resolve_optim(cfg.train)),
        make_optimizer(resolve_optim(cfg.train, cfg.disc_optim)),
        cfg.gan, seed=cfg.train.seed)


def log_examples(step: int, codec: AlphaCodec, batch: Mapping[str, np.ndarray], logger,
                 cfg: AlphaConfig, n: int = 2) -> None:
    """Audio before/after and their log-mel spectrograms for the first ``n`` utterances
    of ``batch`` (eval mode, padding cut off)."""
    codec.eval()
    wav = jnp.asarray(batch["audio"][:n])
    valid = jnp.asarray(batch["audio_valid"][:n])
    recon = np.asarray(nnx.jit(lambda c, w, v: c(w, v).recon)(codec, wav, valid))
    codec.train()
    log_reconstructions(step, logger, np.asarray(wav), recon, np.asarray(valid),
                        cfg.sample_rate)


def log_reconstructions(step: int, logger, real: np.ndarray, recon: np.ndarray,
                        valid: np.ndarray, sample_rate: int) -> None:
    """Log ``audio/<i>_real|recon`` and their log-mel spectrograms ``mel/<i>_...`` for
    each row of ``real, recon [B, N, 1]``, padding (``valid [B, N]`` False) cut off."""
    for i in range(real.shape[0]):
        keep = np.asarray(valid[i], bool)
        if not keep.any():
            continue
        for name, x in (("real", real[i, keep, 0]), ("recon", recon[i, keep, 0])):
            logger.log_audio(step, f"audio/{i}_{name}", x, sample_rate)
            mel = log_mel_spectrogram(jnp.asarray(x), sr=sample_rate,
                                      n_fft=1024, hop_length=256, n_mels=80)
            logger.log_spectrogram(step, f"mel/{i}_{name}", np.asarray(mel))


def summarize(history: list[dict[str, Any]], keys=("gen/mel", "gen/ctc", "gen/rec_loss",
                                                   "disc/loss")) -> str:
    """``key first -> last`` for the given metrics of a run's history."""
    parts = []
    for k in keys:
        vals = [h[k] for h in history if k in h]
        if vals:
            parts.append(f"{k} {vals[0]:.3f} -> {vals[-1]:.3f}")
    return ", ".join(parts)
