"""Spectral reconstruction losses between waveforms: multi-resolution STFT and (multi-scale) mel.

Waveforms are ``[B, N]`` or ``[B, N, 1]`` (a trailing channel of size 1 is squeezed).
``lengths`` (int ``[B]``, valid samples; None = all valid) masks padded batches: samples
outside the valid region are zeroed first and frames outside ``common.audio.frame_mask``
are left out of every sum and mean, so neither the padding nor its contents change the
loss. With ``pad_mode="constant"`` (the default) and right padding, the valid frames are
exactly those of the unpadded signal whose centre sample is valid (for left padding, when
the pad is a multiple of every hop). ``pad_mode="reflect"`` matches torch.stft's default
(used by auraloss and DAC) on unpadded signals, but a padded signal then sees zeros, not a
reflection, past its end. Without ``lengths`` every frame counts, as in librosa / auraloss /
DAC; with ``lengths`` a frame centred exactly on sample ``L`` is invalid, so
``lengths=[N] * B`` drops the last frame when ``N`` is a multiple of the hop.

Resolutions, windows and padding choices are static (they fix shapes): pass them as
static arguments under ``jax.jit``. Everything is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.audio import (
    DEFAULT_RESOLUTIONS,
    STFTConfig,
    frame_mask,
    mel_spectrogram,
    multi_resolution_magnitudes,
)
from common.audio.stft import PaddingSide, WindowSpec
from common.losses.regression import abs_sign_grad, masked_mean, masked_sum_count

# Spectral convergence of a silent target is undefined (0/0 or x/0): the denominator is
# floored here so the loss stays finite (a silent target with a silent prediction gives 0).
SC_DENOMINATOR_FLOOR = 1e-7


def as_batch_time(x: jax.Array, name: str = "waveform") -> jax.Array:
    """``[B, N]`` or ``[B, N, 1]`` -> float32 ``[B, N]``."""
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [B, N] or [B, N, 1], got shape {x.shape}")
    return x


def sample_mask(lengths: jax.Array, n_samples: int, padding_side: PaddingSide = "right"):
    """bool ``[B, n_samples]``: True on the valid samples of each signal."""
    idx = np.arange(n_samples)
    lengths = jnp.asarray(lengths)[:, None]
    if padding_side == "right":
        return idx < lengths
    if padding_side == "left":
        return idx >= n_samples - lengths
    raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")


def _prepare(pred_wav, target_wav, lengths, padding_side):
    pred, target = as_batch_time(pred_wav, "pred_wav"), as_batch_time(target_wav, "target_wav")
    if pred.shape != target.shape:
        raise ValueError(f"pred_wav {pred.shape} and target_wav {target.shape} differ")
    if lengths is not None:
        valid = sample_mask(lengths, pred.shape[-1], padding_side)
        pred, target = jnp.where(valid, pred, 0.0), jnp.where(valid, target, 0.0)
    return pred, target


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at 0 is 0 instead of inf (NaN downstream)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _res_name(cfg: STFTConfig) -> str:
    name = f"n{cfg.n_fft}_h{cfg.hop_length}"
    return name if cfg.win_length is None else f"{name}_w{cfg.win_length}"


def multi_resolution_stft_loss(
    pred_wav: jax.Array,
    target_wav: jax.Array,
    *,
    resolutions: tuple[STFTConfig, ...] = DEFAULT_RESOLUTIONS,
    lengths: jax.Array | None = None,
    sc_weight: float = 1.0,
    mag_weight: float = 1.0,
    log_eps: float = 1e-7,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    padding_side: PaddingSide = "right",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Multi-resolution STFT loss (Yamamoto et al. 2019, Parallel WaveGAN), auraloss variant.

    pred_wav, target_wav: ``[B, N]`` or ``[B, N, 1]``; lengths: optional int ``[B]``.
    Per resolution, with ``S = |STFT|`` (exact magnitudes, ``common.audio.magnitude``)
    and sums/means over the valid frames of the whole batch, all bins:

    - spectral convergence ``sc = ||S_t - S_p||_F / ||S_t||_F`` (auraloss
      ``SpectralConvergenceLoss``: one Frobenius norm over the whole batch, not a mean
      of per-example ratios; the denominator is floored at ``SC_DENOMINATOR_FLOOR``);
    - log magnitude ``log_mag = mean |log(S_t + log_eps) - log(S_p + log_eps)|``
      (auraloss ``STFTMagnitudeLoss(log=True, log_eps=log_eps, distance="L1")``).

    ``loss = mean over resolutions of (sc_weight * sc + mag_weight * log_mag)``, as
    auraloss ``MultiResolutionSTFTLoss`` (which averages its per-resolution ``STFTLoss``).
    Differences from auraloss: its ``STFTLoss`` clamps ``|X|^2`` at ``eps=1e-8`` before the
    square root (we use exact magnitudes with a safe gradient at 0, and ``log_eps`` inside
    the log); torch.stft pads with ``reflect``, we default to ``constant`` (see module doc).

    Returns float32 ``(loss, metrics)``; metrics: ``loss``, ``sc``, ``log_mag`` (means over
    resolutions) and ``sc/<res>``, ``log_mag/<res>`` per resolution, ``<res>`` like
    ``n2048_h512``.
    """
    pred, target = _prepare(pred_wav, target_wav, lengths, padding_side)
    kwargs = dict(window=window, center=center, pad_mode=pad_mode, lengths=lengths,
                  padding_side=padding_side)
    mags_p = multi_resolution_magnitudes(pred, resolutions, **kwargs)
    mags_t = multi_resolution_magnitudes(target, resolutions, **kwargs)
    metrics: dict[str, jax.Array] = {}
    scs, log_mags = [], []
    for cfg, (s_p, mask), (s_t, _) in zip(resolutions, mags_p, mags_t, strict=True):
        mask = mask[..., None]  # [B, T, 1] against [B, T, F]
        diff_sq, _ = masked_sum_count(jnp.square(s_t - s_p), mask)
        ref_sq, _ = masked_sum_count(jnp.square(s_t), mask)
        sc = _safe_sqrt(diff_sq) / jnp.maximum(_safe_sqrt(ref_sq), SC_DENOMINATOR_FLOOR)
        log_mag = masked_mean(abs_sign_grad(jnp.log(s_t + log_eps) - jnp.log(s_p + log_eps)), mask)
        metrics[f"sc/{_res_name(cfg)}"] = sc
        metrics[f"log_mag/{_res_name(cfg)}"] = log_mag
        scs.append(sc)
        log_mags.append(log_mag)
    sc, log_mag = jnp.mean(jnp.stack(scs)), jnp.mean(jnp.stack(log_mags))
    loss = jnp.mean(sc_weight * jnp.stack(scs) + mag_weight * jnp.stack(log_mags))
    return loss, {"loss": loss, "sc": sc, "log_mag": log_mag, **metrics}


def _mel_pair(pred, target, *, lengths, sample_rate, n_fft, hop_length, win_length, n_mels,
              fmin, fmax, window, center, pad_mode, padding_side):
    """Mel spectrograms of ``|STFT|`` (power 1) of both signals and the valid-frame mask."""
    kwargs = dict(sr=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                  window=window, center=center, pad_mode=pad_mode, power=1.0, n_mels=n_mels,
                  fmin=fmin, fmax=fmax, lengths=lengths, padding_side=padding_side)
    mel_p, mel_t = mel_spectrogram(pred, **kwargs), mel_spectrogram(target, **kwargs)
    if lengths is None:
        return mel_p, mel_t, None
    mask = frame_mask(lengths, pred.shape[-1], n_fft=n_fft, hop_length=hop_length,
                      center=center, padding_side=padding_side)
    return mel_p, mel_t, mask[..., None]


def mel_l1_loss(
    pred_wav: jax.Array,
    target_wav: jax.Array,
    *,
    sample_rate: float,
    n_fft: int = 1024,
    hop_length: int | None = None,
    win_length: int | None = None,
    n_mels: int = 80,
    fmin: float = 0.0,
    fmax: float | None = None,
    log_floor: float = 1e-5,
    lengths: jax.Array | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    padding_side: PaddingSide = "right",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Single-resolution log-mel L1, HiFi-GAN style.

    pred_wav, target_wav: ``[B, N]`` or ``[B, N, 1]``; lengths: optional int ``[B]``.
    ``loss = mean |ln max(M_t, log_floor) - ln max(M_p, log_floor)|`` over valid frames and
    all mel bins, ``M`` the librosa (Slaney) mel filterbank applied to ``|STFT|`` (power 1),
    as HiFi-GAN's ``dynamic_range_compression`` (natural log, clip 1e-5) of its magnitude
    mel. ``hop_length`` defaults to ``n_fft // 4``. Framing follows ``common.audio`` (centred,
    librosa semantics), not HiFi-GAN's own reflect-padded ``center=False`` framing.

    Returns float32 ``(loss, {"loss", "mel_l1"})``.
    """
    pred, target = _prepare(pred_wav, target_wav, lengths, padding_side)
    hop_length = (win_length or n_fft) // 4 if hop_length is None else hop_length
    mel_p, mel_t, mask = _mel_pair(
        pred, target, lengths=lengths, sample_rate=sample_rate, n_fft=n_fft,
        hop_length=hop_length, win_length=win_length, n_mels=n_mels, fmin=fmin, fmax=fmax,
        window=window, center=center, pad_mode=pad_mode, padding_side=padding_side,
    )
    diff = jnp.log(jnp.maximum(mel_t, log_floor)) - jnp.log(jnp.maximum(mel_p, log_floor))
    loss = masked_mean(abs_sign_grad(diff), mask)
    return loss, {"loss": loss, "mel_l1": loss}


def multi_scale_mel_loss(
    pred_wav: jax.Array,
    target_wav: jax.Array,
    *,
    sample_rate: float,
    n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048),
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320),
    fmin: float = 0.0,
    fmax: float | None = None,
    clamp_eps: float = 1e-5,
    pow: float = 1.0,  # DAC's name (shadows the builtin here only)
    log_weight: float = 1.0,
    mag_weight: float = 0.0,
    lengths: jax.Array | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    padding_side: PaddingSide = "right",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Multi-scale mel loss of DAC (descript-audio-codec ``dac/nn/loss.py``, MelSpectrogramLoss).

    pred_wav, target_wav: ``[B, N]`` or ``[B, N, 1]``; lengths: optional int ``[B]``.
    For each scale ``(n_fft, n_mels)``: window ``n_fft`` (periodic Hann), hop ``n_fft // 4``,
    ``M = melfb @ |STFT|`` (audiotools ``AudioSignal.mel_spectrogram``: magnitude, not
    power, with ``librosa.filters.mel`` defaults: Slaney scale and norm), then

        log_l1 = mean |log10(max(M_p, clamp_eps)^pow) - log10(max(M_t, clamp_eps)^pow)|
        mag_l1 = mean |M_p - M_t|

    (means over the valid frames of the batch and all mel bins; ``log10(m^pow)`` is computed
    as ``pow * log10(m)``). ``loss = sum over scales of (log_weight * log_l1 +
    mag_weight * mag_l1)``: DAC sums the scales. Defaults are DAC's training configuration
    (``conf/base.yml``: the seven scales above, fmin 0, fmax None, ``clamp_eps=1e-5``,
    ``pow=1.0``, ``mag_weight=0.0``); the class defaults there are ``pow=2.0``,
    ``mag_weight=1.0``. DAC's STFT pads with ``reflect`` (torch.stft); ours defaults to
    ``constant`` (see module doc). The mel of ``n_fft=32`` has few bins, so some of the 5
    mel filters are sparse, as in DAC.

    Returns float32 ``(loss, metrics)``; metrics: ``loss``, ``log_l1``, ``mag_l1`` (sums over
    scales) and ``log_l1/n<n_fft>``, ``mag_l1/n<n_fft>`` per scale.
    """
    if len(n_ffts) != len(n_mels):
        raise ValueError(f"n_ffts {n_ffts} and n_mels {n_mels} must have the same length")
    pred, target = _prepare(pred_wav, target_wav, lengths, padding_side)
    metrics: dict[str, jax.Array] = {}
    log_terms, mag_terms = [], []
    for n_fft, n_mel in zip(n_ffts, n_mels, strict=True):
        mel_p, mel_t, mask = _mel_pair(
            pred, target, lengths=lengths, sample_rate=sample_rate, n_fft=n_fft,
            hop_length=n_fft // 4, win_length=None, n_mels=n_mel, fmin=fmin, fmax=fmax,
            window=window, center=center, pad_mode=pad_mode, padding_side=padding_side,
        )
        log_p = pow * jnp.log10(jnp.maximum(mel_p, clamp_eps))
        log_t = pow * jnp.log10(jnp.maximum(mel_t, clamp_eps))
        log_l1 = masked_mean(abs_sign_grad(log_p - log_t), mask)
        mag_l1 = masked_mean(abs_sign_grad(mel_p - mel_t), mask)
        metrics[f"log_l1/n{n_fft}"] = log_l1
        metrics[f"mag_l1/n{n_fft}"] = mag_l1
        log_terms.append(log_l1)
        mag_terms.append(mag_l1)
    log_l1, mag_l1 = jnp.sum(jnp.stack(log_terms)), jnp.sum(jnp.stack(mag_terms))
    loss = log_weight * log_l1 + mag_weight * mag_l1
    return loss, {"loss": loss, "log_l1": log_l1, "mag_l1": mag_l1, **metrics}
