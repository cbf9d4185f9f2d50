"""Mel filterbanks (numpy, static) and mel spectrograms (pure JAX), librosa semantics.

``mel_filterbank`` reproduces ``librosa.filters.mel`` in float64 and is cached: it is a
trace-time constant, never a traced value. ``mel_spectrogram`` reproduces
``librosa.feature.melspectrogram`` but channels-last: ``[..., N] -> [..., frames, n_mels]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.audio.stft import PaddingSide, WindowSpec, magnitude, stft

# Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False).
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray, htk: bool = False) -> np.ndarray:
    """Hz to mels (float64 numpy), HTK or Slaney scale, as ``librosa.hz_to_mel``."""
    freqs = np.asarray(freqs, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + freqs / 700.0)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(freqs, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(freqs >= _MIN_LOG_HZ, log_part, freqs / _F_SP)


def mel_to_hz(mels: np.ndarray, htk: bool = False) -> np.ndarray:
    """Mels to Hz (float64 numpy), the inverse of ``hz_to_mel``."""
    mels = np.asarray(mels, np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mels, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mels >= _MIN_LOG_MEL, log_part, _F_SP * mels)


@functools.lru_cache(maxsize=64)
def mel_filterbank(
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters, float64 numpy ``[n_fft // 2 + 1, n_mels]`` (read-only).

    Equals ``librosa.filters.mel(sr=sr, n_fft=n_fft, ...).T``: transposed so that a
    channels-last spectrogram ``[..., frames, freq] @ fb`` gives ``[..., frames, n_mels]``.
    ``norm="slaney"`` scales each filter to unit area (constant energy per channel);
    ``norm=None`` leaves unit peaks.
    """
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]  # [n_mels + 2, freq]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # [n_mels, freq]
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    fb = np.ascontiguousarray(weights.T)
    fb.flags.writeable = False  # cached and shared: nobody may modify it in place
    return fb


def mel_spectrogram(
    x: jax.Array,
    sr: float = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    *,
    lengths: jax.Array | None = None,
    padding_side: PaddingSide = "right",
) -> jax.Array:
    """Mel spectrogram, as ``librosa.feature.melspectrogram(y=x, ...)`` but channels-last.

    x: ``[..., N]`` waveform. Returns float32 ``[..., frames, n_mels]``: the mel
    filterbank applied to ``|stft|**power``. Frames outside ``lengths`` are zero
    (see ``stft``).
    """
    spec = stft(
        x, n_fft, hop_length, win_length, window, center, pad_mode,
        lengths=lengths, padding_side=padding_side,
    )
    fb = jnp.asarray(mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm), jnp.float32)
    # HIGHEST: TPU/GPU default to bf16/TF32 matmuls, which would break librosa parity.
    return jnp.matmul(magnitude(spec, power=power), fb, precision=jax.lax.Precision.HIGHEST)


def log_mel_spectrogram(
    x: jax.Array,
    sr: float = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    *,
    log_floor: float = 1e-5,
    to_db: bool = False,
    amin: float = 1e-10,
    lengths: jax.Array | None = None,
    padding_side: PaddingSide = "right",
) -> jax.Array:
    """Log mel spectrogram, float32 ``[..., frames, n_mels]``.

    Default: ``log(max(mel, log_floor))`` (natural log). ``to_db=True``:
    ``10 * log10(max(mel, amin))``, i.e. ``librosa.power_to_db(mel, ref=1.0, amin=amin,
    top_db=None)`` (meant for ``power=2``). The gradient below the floor is 0, so it
    is finite on silence.
    """
    mel = mel_spectrogram(
        x, sr, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels,
        fmin, fmax, htk, norm, lengths=lengths, padding_side=padding_side,
    )
    if to_db:
        return 10.0 * jnp.log10(jnp.maximum(mel, amin))
    return jnp.log(jnp.maximum(mel, log_floor))
