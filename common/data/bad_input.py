"""Decode a record's audio, and what to do when an input is broken: the one bad-input
policy of training, evaluation, preprocessing and the codecs' ``infer`` commands.

Every way an input can be unusable has a reason name (``REASONS``). Under
``mode="skip"`` the record is dropped: ``decode_record`` returns a ``Skipped`` marker,
a ``SkipStats`` counts it by reason and logs one line naming the file. Under
``mode="strict"`` it raises ``BadInputError`` naming the file and the reason. Inputs
that are usable after a fix (multichannel -> mono, an unusual rate -> resampled, and a
truncated file under ``truncated="keep"``) are fixed and counted as notes (``NOTES``),
not skipped; each note can log a line naming the file and what was done
(``SkipStats(note_level=...)``: the commands that read a user's files say it at INFO,
training pipelines, where every file may be resampled, at DEBUG).

A dangling symbolic link is "missing" (the message names its target); a file whose
header promises more audio than it holds is "truncated" (a cut download or copy:
libsndfile would decode the part that exists without a word).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import soundfile as sf

from common.audio.io import AudioLoadError, read_frames, resample, truncation_detail

log = logging.getLogger(__name__)

REASONS = ("missing", "unreadable", "empty", "nonfinite", "truncated", "silent", "too_short",
           "too_long")
NOTES = ("downmixed", "resampled", "truncated")


class BadInputError(AudioLoadError):
    """A broken input under ``mode="strict"``; the message names the file and reason.
    An ``AudioLoadError`` (a ``ValueError``), as the audio readers raise."""

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
      truncated: a file holding less audio than its header promises: "skip" it (a
        transcript would not match what is left), or "keep" the part that exists
        (counted as a note, with a warning naming the file).
    """

    mode: Literal["skip", "strict"] = "skip"
    min_seconds: float = 0.1
    max_seconds: float | None = None
    silence_dbfs: float = -60.0
    truncated: Literal["skip", "keep"] = "skip"

    def __post_init__(self):
        if self.mode not in ("skip", "strict"):
            raise ValueError(f"BadInputConfig.mode must be 'skip' or 'strict', got {self.mode!r}")
        if self.truncated not in ("skip", "keep"):
            raise ValueError("BadInputConfig.truncated must be 'skip' or 'keep', got "
                             f"{self.truncated!r}")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Marker for a dropped record (pipelines filter these out and count them)."""

    path: str
    reason: str
    detail: str = ""


class SkipStats:
    """Thread-safe counts of skipped records by reason, and of notes (fixed inputs).

    Each skip logs a WARNING naming the file; each note with a path a line at
    ``note_level`` (a kept truncated file: WARNING, since audio is missing).
    """

    def __init__(self, note_level: int = logging.DEBUG):
        self._lock = threading.Lock()
        self.note_level = note_level
        self.skipped: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()

    # Sources carrying their load-time stats are pickled into grain worker processes;
    # a lock cannot be pickled, so each copy gets its own.
    def __getstate__(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "notes": self.notes, "note_level": self.note_level}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self.skipped, self.notes = state["skipped"], state["notes"]
        self.note_level = state.get("note_level", logging.DEBUG)

    def skip(self, marker: Skipped) -> None:
        with self._lock:
            self.skipped[marker.reason] += 1
        log.warning("skipping %s: %s%s", marker.path, marker.reason,
                    f" ({marker.detail})" if marker.detail else "")

    def note(self, reason: str, path: str = "", detail: str = "") -> None:
        with self._lock:
            self.notes[reason] += 1
        if path:
            level = logging.WARNING if reason == "truncated" else self.note_level
            log.log(level, "%s: %s%s", path, reason, f" ({detail})" if detail else "")

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


def _missing_detail(path: str) -> str:
    """Why ``path`` is not there: a dangling link names its target."""
    if os.path.islink(path):
        return f"broken symbolic link to {os.readlink(path)}"
    return "no such file"


def decode_record(rec: Mapping[str, Any], sample_rate: int,
                  cfg: BadInputConfig = BadInputConfig(),
                  stats: SkipStats | None = None) -> dict[str, Any] | Skipped:
    """``rec`` plus ``audio`` (float32 ``[N]`` mono at ``sample_rate``), ``sample_rate``,
    and what the file was: ``source_sample_rate`` and ``source_channels``.

    Returns a ``Skipped`` marker (``mode="skip"``) or raises ``BadInputError``
    (``mode="strict"``) when the file is missing (a dangling link included),
    unreadable, empty, has NaN/Inf, is truncated (unless ``cfg.truncated="keep"``), is
    silent, or is too short/long after resampling (a 0-byte file or ``audio_bytes`` is
    "empty"). A record with an ``audio_bytes`` entry (an encoded file, as hub datasets
    store audio) is decoded from those bytes; ``audio_path`` then only names it.
    Downmixing, resampling and a kept truncated file are notes in ``stats`` (for kept
    records only: a file that is then skipped counts once, as skipped).
    """
    path = str(rec["audio_path"])

    def bad(reason: str, detail: str = "") -> Skipped:
        if cfg.mode == "strict":
            raise BadInputError(path, reason, detail)
        marker = Skipped(path, reason, detail)
        if stats is not None:
            stats.skip(marker)
        return marker

    notes: list[tuple[str, str]] = []  # counted only if the record is kept

    blob = rec.get("audio_bytes")
    try:
        # Hub datasets carry the encoded file in the record instead of a local path.
        frames = read_frames(blob if blob is not None else path)
    except FileNotFoundError:
        return bad("missing", _missing_detail(path))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError) as e:
        if blob is None and not os.path.exists(path):
            return bad("missing", _missing_detail(path))
        # libsndfile calls a 0-byte file "Format not recognised"; say what it is.
        if (len(blob) if blob is not None else os.path.getsize(path)) == 0:
            return bad("empty", "0 bytes")
        return bad("unreadable", str(e))
    data, sr = frames.data, frames.sample_rate
    if data.shape[0] == 0:
        return bad("empty", "zero audio frames")
    nonfinite = int(data.size - np.count_nonzero(np.isfinite(data)))
    if nonfinite:
        return bad("nonfinite", f"{nonfinite} NaN/Inf samples")
    if frames.truncated:
        if cfg.truncated == "skip":
            return bad("truncated", truncation_detail(frames))
        notes.append(("truncated", f"{truncation_detail(frames)}: kept what is there"))
    if data.shape[1] > 1:
        notes.append(("downmixed", f"{data.shape[1]} channels mixed to mono"))
        wav = data.mean(axis=1, dtype=np.float32)
    else:
        wav = data[:, 0]
    if sr != sample_rate:
        notes.append(("resampled", f"{sr} Hz -> {sample_rate} Hz"))
        wav = resample(wav, sr, sample_rate)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 10.0 ** (cfg.silence_dbfs / 20.0):
        return bad("silent", f"peak {20 * np.log10(max(peak, 1e-12)):.1f} dBFS")
    seconds = wav.shape[0] / sample_rate
    if seconds < cfg.min_seconds:
        return bad("too_short", f"{seconds:.3f} s < {cfg.min_seconds} s")
    if cfg.max_seconds is not None and seconds > cfg.max_seconds:
        return bad("too_long", f"{seconds:.1f} s > {cfg.max_seconds} s")
    if stats is not None:
        for reason, detail in notes:
            stats.note(reason, path, detail)
    return {**rec, "audio": np.ascontiguousarray(wav, np.float32), "sample_rate": sample_rate,
            "source_sample_rate": sr, "source_channels": int(data.shape[1])}
