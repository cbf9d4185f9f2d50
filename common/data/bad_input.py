"""Decode a record's audio, and what to do when an input is broken.

Every way an input can be unusable has a reason name (``REASONS``). Under
``mode="skip"`` the record is dropped: ``decode_record`` returns a ``Skipped`` marker,
a ``SkipStats`` counts it by reason and logs one line naming the file. Under
``mode="strict"`` it raises ``BadInputError`` naming the file and the reason. Inputs
that are usable after a fix (multichannel -> mono, an unusual rate -> resampled) are
fixed and counted as notes, not skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import soundfile as sf

from common.audio.io import resample

log = logging.getLogger(__name__)

REASONS = ("missing", "unreadable", "empty", "nonfinite", "silent", "too_short", "too_long")
NOTES = ("downmixed", "resampled")


class BadInputError(ValueError):
    """A broken input under ``mode="strict"``; the message names the file and reason."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(frozen=True)
class BadInputConfig:
    """What counts as broken, and whether to skip it or stop.

    Attributes:
      mode: "skip" (count, log, drop) or "strict" (raise ``BadInputError``).
      min_seconds: shorter decoded audio is "too_short".
      max_seconds: longer is "too_long" (None: no limit; pipelines usually crop instead).
      silence_dbfs: audio whose peak is below this (dB re full scale) is "silent".
    """

    mode: Literal["skip", "strict"] = "skip"
    min_seconds: float = 0.1
    max_seconds: float | None = None
    silence_dbfs: float = -60.0

    def __post_init__(self):
        if self.mode not in ("skip", "strict"):
            raise ValueError(f"BadInputConfig.mode must be 'skip' or 'strict', got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Marker for a dropped record (pipelines filter these out and count them)."""

    path: str
    reason: str
    detail: str = ""


class SkipStats:
    """Thread-safe counts of skipped records by reason, and of notes (fixed inputs)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()

    # Sources carrying their load-time stats are pickled into grain worker processes;
    # a lock cannot be pickled, so each copy gets its own.
    def __getstate__(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "notes": self.notes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self.skipped, self.notes = state["skipped"], state["notes"]

    def skip(self, marker: Skipped) -> None:
        with self._lock:
            self.skipped[marker.reason] += 1
        log.warning("skipping %s: %s%s", marker.path, marker.reason,
                    f" ({marker.detail})" if marker.detail else "")

    def note(self, reason: str, path: str = "") -> None:
        with self._lock:
            self.notes[reason] += 1
        if path:
            log.debug("fixed %s: %s", path, reason)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        if not self.skipped and not self.notes:
            return "no bad inputs"
        parts = [f"skipped {self.total_skipped}"] + [f"{k}={v}" for k, v in
                                                     sorted(self.skipped.items())]
        parts += [f"{k}={v}" for k, v in sorted(self.notes.items())]
        return " ".join(parts)


def decode_record(rec: Mapping[str, Any], sample_rate: int,
                  cfg: BadInputConfig = BadInputConfig(),
                  stats: SkipStats | None = None) -> dict[str, Any] | Skipped:
    """``rec`` plus ``audio`` (float32 ``[N]`` mono at ``sample_rate``) and ``sample_rate``.

    Returns a ``Skipped`` marker (``mode="skip"``) or raises ``BadInputError``
    (``mode="strict"``) when the file is missing, unreadable, empty, has NaN/Inf, is
    silent, or is too short/long after resampling (a 0-byte file or ``audio_bytes`` is
    "empty"). A record with an ``audio_bytes`` entry (an encoded file, as hub datasets
    store audio) is decoded from those bytes; ``audio_path`` then only names it.
    """
    path = str(rec["audio_path"])

    def bad(reason: str, detail: str = "") -> Skipped:
        if cfg.mode == "strict":
            raise BadInputError(path, reason, detail)
        marker = Skipped(path, reason, detail)
        if stats is not None:
            stats.skip(marker)
        return marker

    blob = rec.get("audio_bytes")
    try:
        # Hub datasets carry the encoded file in the record instead of a local path.
        src = io.BytesIO(blob) if blob is not None else path
        data, sr = sf.read(src, dtype="float32", always_2d=True)
    except FileNotFoundError:
        return bad("missing")
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError) as e:
        if blob is None and not os.path.exists(path):
            return bad("missing", str(e))
        # libsndfile calls a 0-byte file "Format not recognised"; say what it is.
        if (len(blob) if blob is not None else os.path.getsize(path)) == 0:
            return bad("empty", "0 bytes")
        return bad("unreadable", str(e))
    if data.shape[0] == 0:
        return bad("empty", "zero audio frames")
    nonfinite = int(data.size - np.count_nonzero(np.isfinite(data)))
    if nonfinite:
        return bad("nonfinite", f"{nonfinite} NaN/Inf samples")
    if data.shape[1] > 1:
        if stats is not None:
            stats.note("downmixed", path)
        wav = data.mean(axis=1, dtype=np.float32)
    else:
        wav = data[:, 0]
    if sr != sample_rate:
        if stats is not None:
            stats.note("resampled", path)
        wav = resample(wav, sr, sample_rate)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 10.0 ** (cfg.silence_dbfs / 20.0):
        return bad("silent", f"peak {20 * np.log10(max(peak, 1e-12)):.1f} dBFS")
    seconds = wav.shape[0] / sample_rate
    if seconds < cfg.min_seconds:
        return bad("too_short", f"{seconds:.3f} s < {cfg.min_seconds} s")
    if cfg.max_seconds is not None and seconds > cfg.max_seconds:
        return bad("too_long", f"{seconds:.1f} s > {cfg.max_seconds} s")
    return {**rec, "audio": np.ascontiguousarray(wav, np.float32), "sample_rate": sample_rate}
