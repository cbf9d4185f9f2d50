"""The codec generator's non-adversarial loss: reconstruction, quantizer and CTC terms.

Pure functions of arrays (jit-friendly). Which terms exist is static: a zero weight in
``LossConfig`` drops the term from the graph, and a batch without phonemes (a source
with no transcripts) drops the CTC term. The adversarial and feature-matching terms
are added by the GAN step (``common.train.gan``) from the discriminator's outputs; see
``generator_adversarial_loss`` for their definition.

Batches are left-padded: ``lengths [B]`` counts each utterance's valid samples and every
spectral term leaves the padded frames out (``padding_side="left"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.losses.adversarial import feature_matching_loss, hinge_g_loss, lsgan_g_loss
from common.losses.ctc import ctc_loss
from common.losses.regression import l1_loss
from common.losses.spectral import multi_resolution_stft_loss, multi_scale_mel_loss
from tokenizer.alpha.config import LossConfig


def reconstruction_loss(recon: jax.Array, target: jax.Array, lengths: jax.Array, *,
                        sample_rate: int, cfg: LossConfig) -> tuple[jax.Array, dict]:
    """``recon, target [B, N, 1]`` (left-padded), ``lengths int [B]`` -> weighted sum of
    the multi-scale mel L1, multi-resolution STFT (Parallel WaveGAN's 512/1024/2048) and
    waveform L1 terms, and metrics (unweighted terms under ``mel``, ``stft``, ``wav_l1``)."""
    total, metrics = jnp.float32(0.0), {}
    if cfg.mel:
        mel, _ = multi_scale_mel_loss(recon, target, sample_rate=sample_rate,
                                      n_ffts=cfg.mel_n_ffts, n_mels=cfg.mel_n_mels,
                                      lengths=lengths, padding_side="left")
        total, metrics["mel"] = total + cfg.mel * mel, mel
    if cfg.stft:
        stft, _ = multi_resolution_stft_loss(recon, target, lengths=lengths,
                                             padding_side="left")
        total, metrics["stft"] = total + cfg.stft * stft, stft
    if cfg.waveform:
        n = target.shape[1]
        valid = jnp.arange(n)[None, :] >= (n - lengths)[:, None]
        wav, _ = l1_loss(recon[..., 0], target[..., 0], valid)
        total, metrics["wav_l1"] = total + cfg.waveform * wav, wav
    return total, metrics


def _quantizer_weight(name: str, cfg: LossConfig) -> float:
    suffix = name.rsplit("_", 1)[-1]
    weights = {"commitment": cfg.commitment, "codebook": cfg.codebook, "entropy": cfg.entropy}
    if suffix not in weights:
        raise ValueError(f"no loss weight for the quantizer loss {name!r}")
    return weights[suffix]


def quantizer_loss(losses: dict[str, jax.Array], cfg: LossConfig) -> tuple[jax.Array, dict]:
    """The quantizer's unweighted losses (``QuantizerOutput.losses``) weighted by their
    suffix (commitment / codebook / entropy); metrics keep the unweighted values."""
    total = jnp.float32(0.0)
    for name, value in losses.items():
        total = total + _quantizer_weight(name, cfg) * value
    return total, dict(losses)


def phoneme_ctc_loss(logits: jax.Array, frame_valid: jax.Array, phonemes: jax.Array,
                     phonemes_valid: jax.Array) -> tuple[jax.Array, dict]:
    """CTC of the stage-1 code logits ``[B, T, K]`` (K = phoneme vocab, blank 0) against
    the phoneme ids ``[B, L]`` (``phonemes_valid`` bool ``[B, L]``): mean NLL per phoneme
    token over the utterances that have phonemes, plus ``ctc_examples`` (how many), the
    fraction of them with more phonemes than frames (``ctc_infeasible``) and the mean
    blank probability (``ctc_blank_prob``).

    A row without a valid phoneme is left out, not trained towards all blanks: the
    pipeline empties the phonemes of an utterance it cropped (its transcript no longer
    matches its audio) or whose transcript it masked, and padding rows have none. A batch
    with no such row gives a loss (and gradient) of 0."""
    has_phonemes = jnp.any(jnp.asarray(phonemes_valid) != 0, axis=1)
    loss, m = ctc_loss(logits, frame_valid, phonemes, phonemes_valid,
                       sequence_valid=has_phonemes)
    return loss, {"ctc": loss, "ctc_examples": m["num_sequences"],
                  "ctc_infeasible": m["infeasible_frac"], "ctc_blank_prob": m["blank_prob"]}


def generator_loss(recon: jax.Array, target: jax.Array, lengths: jax.Array,
                   quant_losses: dict[str, jax.Array], *, sample_rate: int, cfg: LossConfig,
                   logits: jax.Array | None = None, frame_valid: jax.Array | None = None,
                   phonemes: jax.Array | None = None,
                   phonemes_valid: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Reconstruction + quantizer + (when logits and phonemes are given) CTC.

    Returns ``(loss, metrics)``: ``metrics["rec_loss"]`` the weighted total, the
    unweighted terms by name, float32 scalars."""
    rec, metrics = reconstruction_loss(recon, target, lengths, sample_rate=sample_rate,
                                       cfg=cfg)
    q, q_metrics = quantizer_loss(quant_losses, cfg)
    total = rec + q
    metrics.update(q_metrics)
    if cfg.ctc and logits is not None and phonemes is not None:
        ctc, ctc_metrics = phoneme_ctc_loss(logits, frame_valid, phonemes, phonemes_valid)
        total = total + cfg.ctc * ctc
        metrics.update(ctc_metrics)
    metrics["rec_loss"] = total
    return total, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def generator_adversarial_loss(fake_logits: list[jax.Array], real_feats: list[list[jax.Array]],
                               fake_feats: list[list[jax.Array]], *, kind: str = "lsgan",
                               feature_weight: float = 2.0, logit_masks=None,
                               feature_masks=None) -> tuple[jax.Array, dict]:
    """``adv + feature_weight * fm`` over all sub-discriminators (sums, as HiFi-GAN and
    DAC): LSGAN ``mean (1 - D(fake))^2`` or hinge ``-mean D(fake)``, and the L1 between
    real and fake feature maps, each a mean over the valid positions of
    ``logit_masks`` / ``feature_masks`` (``Discriminator.masks``; None: all). The GAN
    step computes exactly this (``GANConfig.loss``, ``feature_weight``); here for
    evaluation and tests."""
    g_loss = {"lsgan": lsgan_g_loss, "hinge": hinge_g_loss}[kind]
    adv, _ = g_loss(fake_logits, masks=logit_masks)
    fm, _ = feature_matching_loss(real_feats, fake_feats, masks=feature_masks)
    return adv + feature_weight * fm, {"adv": adv, "feature": fm}
