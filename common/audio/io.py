"""Host-side audio I/O: decode any format libsndfile reads, resample with soxr, save.

These run in data pipelines and scripts on numpy arrays, never under ``jax.jit``.
Waveforms are float32 ``[N]`` (mono) or ``[N, C]`` (channels last, as soundfile).
Broken inputs raise ``AudioLoadError`` naming the file, so a pipeline can count and
skip them with a useful message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

PathLike = str | Path


class AudioLoadError(ValueError):
    """An audio file could not be used; the message names the file and the problem."""


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample float ``[N]`` or ``[N, C]`` from ``orig_sr`` to ``target_sr`` (soxr HQ).

    Returns float32 with ``round(N * target_sr / orig_sr)`` samples.
    """
    wav = np.asarray(wav, np.float32)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return wav.copy()
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: PathLike, sample_rate: int | None = None, *, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 and optionally resample it to ``sample_rate``.

    Returns ``(wav, sr)``: ``wav`` is ``[N]`` when ``mono`` (channel mean), else
    ``[N, C]``; ``sr`` is ``sample_rate`` if given, else the file's rate.
    Raises ``AudioLoadError`` for a missing, unreadable or corrupt file, a file with no
    frames, or one with NaN/Inf samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(f"{path}: no such file")
    if not path.is_file():
        raise AudioLoadError(f"{path}: not a regular file")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as e:
        raise AudioLoadError(f"{path}: cannot decode audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioLoadError(f"{path}: file has zero audio frames")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise AudioLoadError(f"{path}: {bad} non-finite (NaN/Inf) samples")
    wav = data.mean(axis=1, dtype=np.float32) if mono else data
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, np.float32), int(sr)


def save_audio(
    path: PathLike, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16"
) -> Path:
    """Write float ``[N]`` or ``[N, C]`` audio; the format follows the file extension.

    ``subtype`` is a soundfile subtype: ``"PCM_16"`` (default; samples are clipped to
    [-1, 1] first, since libsndfile would otherwise wrap around) or ``"FLOAT"``.
    Parent directories are created. Returns the path.
    """
    path = Path(path)
    wav = np.asarray(wav, np.float32)
    if wav.ndim not in (1, 2):
        raise ValueError(f"wav must be [N] or [N, C], got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise ValueError(f"refusing to write non-finite samples to {path}")
    if subtype.startswith("PCM"):
        wav = np.clip(wav, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sample_rate, subtype=subtype)
    return path
