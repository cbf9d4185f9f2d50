"""How the alpha codec trains: the GAN program (generator and discriminator functions,
optimizers) and what gets logged. ``tokenizer.alpha.train`` wires it to data and the loop.

Batches are host dicts from ``common.data.pipeline``: ``audio [B, N, 1]`` (left-padded),
``audio_valid [B, N]``, ``audio_lengths [B]``, and for the CTC stage ``phonemes [B, L]``
with ``phonemes_valid [B, L]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.losses.ctc_decode import phoneme_metrics
from common.train.gan import disc_optim, gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.losses.generator_loss import generator_loss
from tokenizer.alpha.model import AlphaCodec
from tokenizer.codec.discriminators import Discriminator, gan_disc_fn
from tokenizer.codec.train_logging import log_reconstructions


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
    if cfg.quantizer.kind == "phoneme_bsq" and "phonemes" in batch:
        metrics.update(phoneme_metrics(out.quant.logits, out.frame_valid, batch["phonemes"],
                                       batch["phonemes_valid"]))
    return out.recon, loss, metrics


def build_program(cfg: AlphaConfig) -> Program:
    """The GAN ``Program`` for ``common.train.loop.train``: generator ``AlphaCodec``,
    ``Discriminator``, both AdamW (``train.optim`` and ``disc_optim``)."""

    def gen_fn(codec, batch, key):
        recon, loss, metrics = codec_loss(codec, batch, key, cfg)
        # The valid mask keeps the left padding out of the GAN losses.
        return recon, batch["audio"], loss, metrics, batch["audio_valid"]

    return gan_program(
        lambda rngs: AlphaCodec(cfg, rngs=rngs),
        lambda rngs: Discriminator(cfg.disc, rngs=rngs),
        gen_fn, gan_disc_fn,
        make_optimizer(resolve_optim(cfg.train)),
        make_optimizer(disc_optim(cfg.train, cfg.disc_optim, cfg.gan)),
        cfg.gan, seed=cfg.train.seed, grad_accum=cfg.train.grad_accum)


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
