"""Host-side audio I/O: decode any format libsndfile reads, resample with soxr, save.

These run in data pipelines and scripts on numpy arrays, never under ``jax.jit``.
Waveforms are float32 ``[N]`` (mono) or ``[N, C]`` (channels last, as soundfile).
Broken inputs raise ``AudioLoadError`` naming the file, so a pipeline can count and
skip them with a useful message. ``read_frames`` is the one place a file is decoded:
it also reports a truncated file (a header promising more audio than the file holds),
which libsndfile otherwise decodes silently as the part that exists.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

PathLike = str | Path

# libsndfile's header log says "data : 96000 (should be 31970)" (WAV, W64, RF64) or
# "SSND : ... (should be ...)" (AIFF) when the audio chunk is shorter than its header
# declares: the file was cut. The sizes are bytes.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# A streamed WAV may leave the data size at its maximum ("unknown"): not truncated.
_UNKNOWN_SIZE = 0xFFFFFFFF - 8


class AudioLoadError(ValueError):
    """An audio file could not be used; the message names the file and the problem."""


# A NamedTuple, not a dataclass: this file also loads on its own, outside the package
# (the corpus worker's copy of ``resample`` is tested against it that way), and a
# dataclass needs its module in sys.modules.
class Frames(NamedTuple):
    """What a file decodes to: float32 ``data [N, C]`` (channels last) at ``sample_rate``,
    and ``header_frames``: the frames its header promises when the file holds fewer (a
    truncated file; ``N`` is then what is left), else None."""

    data: np.ndarray
    sample_rate: int
    header_frames: int | None = None

    @property
    def truncated(self) -> bool:
        return self.header_frames is not None


def _header_frames(log: str, frames: int) -> int | None:
    """Frames a truncated file's header promises, from libsndfile's header log; None when
    the audio chunk is as long as declared (or its size is left unknown)."""
    m = _SHORT_CHUNK.search(log)
    if m is None:
        return None
    declared, actual = int(m.group(1)), int(m.group(2))
    if declared >= _UNKNOWN_SIZE or frames <= 0 or declared <= actual:
        return None
    # Whole frames in the bytes that are there (AIFF's chunk adds 8 bytes of its own).
    bytes_per_frame = max(1, round(actual / frames))
    return frames + round((declared - actual) / bytes_per_frame)


def read_frames(src: PathLike | bytes) -> Frames:
    """Decode a file (a path, or its bytes) with libsndfile, noting truncation.

    Raises soundfile's errors (``sf.SoundFileError``, ``RuntimeError``, ...) and
    ``OSError`` as they come: callers decide what a broken file is.
    """
    if isinstance(src, bytes | bytearray):
        src = io.BytesIO(src)
    with sf.SoundFile(src if not isinstance(src, Path) else str(src)) as f:
        data = f.read(dtype="float32", always_2d=True)
        header = _header_frames(f.extra_info, data.shape[0])
        return Frames(data, int(f.samplerate), header)


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
    Raises ``AudioLoadError`` for a missing, unreadable or corrupt file (a truncated
    one included), a file with no frames, or one with NaN/Inf samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(f"{path}: no such file")
    if not path.is_file():
        raise AudioLoadError(f"{path}: not a regular file")
    try:
        frames = read_frames(path)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as e:
        raise AudioLoadError(f"{path}: cannot decode audio ({e})") from e
    data, sr = frames.data, frames.sample_rate
    if data.shape[0] == 0:
        raise AudioLoadError(f"{path}: file has zero audio frames")
    if frames.truncated:
        raise AudioLoadError(f"{path}: truncated ({truncation_detail(frames)})")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise AudioLoadError(f"{path}: {bad} non-finite (NaN/Inf) samples")
    wav = data.mean(axis=1, dtype=np.float32) if mono else data
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, np.float32), int(sr)


def truncation_detail(frames: Frames) -> str:
    """What is missing from a truncated file, in seconds, for messages."""
    sr = frames.sample_rate
    return (f"the header promises {frames.header_frames / sr:.2f} s, the file holds "
            f"{frames.data.shape[0] / sr:.2f} s")


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
