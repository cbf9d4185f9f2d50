"""What a speech pipeline kept, cropped and skipped, and the error when it keeps nothing.

Every batch carries the counts of its rows (``common.data.pipeline`` puts them under its
stats key); ``PipelineReport`` adds them up in the main process, per epoch and in all:

  whole, whole_seconds        utterances used entire (their transcript is complete)
  cropped, cropped_seconds    utterances cut to the batch length (a random window; DAC and
  cropped_source_seconds      EnCodec train on such crops): the seconds kept, of how many
  tokens                      rows whose token sequences are complete (the CTC targets)

plus the skip counts by reason (``SkipStats``). At the end of each epoch it logs one line
(how many utterances and seconds each rule kept, what was skipped and why) and checks:

- no utterance of the epoch survived: ``EmptyPipelineError`` naming the skip reasons.
  So does a process whose first ``EARLY_BATCHES`` batches (or one epoch, when shorter)
  were all padding: a dataset whose files are all unreadable stops within a few steps,
  not after an epoch of training on empty batches with a loss of 0.
- tokens were asked for, utterances kept, but none with a complete transcript (all
  cropped, or all transcripts masked): ``EmptyPipelineError`` too, since CTC would train
  on nothing; within the first ``EARLY_BATCHES`` batches this is a warning only (a
  dataset of mostly long files may still have a few short ones).

``plan_summary`` reports, before any audio is read, what the duration rules will do
(from the metadata or header durations the plan is built on).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

import numpy as np

from common.data.records import DataError

log = logging.getLogger(__name__)

KEPT_KEYS = ("whole", "whole_seconds", "cropped", "cropped_seconds", "cropped_source_seconds",
             "tokens")
EARLY_BATCHES = 32


class EmptyPipelineError(DataError):
    """A pipeline kept no utterance (or no transcript it was asked to tokenise)."""


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _reasons(skipped: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(skipped.items()) if v) or "none"


def kept_summary(kept: Mapping[str, float], skipped: Mapping[str, int], *,
                 tokenized: bool) -> str:
    """One line: utterances and seconds kept whole / cropped, CTC rows, skips by reason."""
    parts = [f"{int(kept.get('whole', 0))} utterances kept whole "
             f"({format_seconds(kept.get('whole_seconds', 0.0))})"]
    if kept.get("cropped", 0):
        parts.append(f"{int(kept['cropped'])} cropped "
                     f"({format_seconds(kept.get('cropped_seconds', 0.0))} kept of "
                     f"{format_seconds(kept.get('cropped_source_seconds', 0.0))})")
    if tokenized:
        parts.append(f"{int(kept.get('tokens', 0))} with complete transcripts (CTC targets)")
    total = sum(skipped.values())
    parts.append(f"skipped {total}" + (f" ({_reasons(skipped)})" if total else ""))
    return ", ".join(parts)


class PipelineReport:
    """Counts per epoch and in all for one ``PipelineIterator`` (see the module doc).

    Args:
      name: names the pipeline in logs and errors ("train data (libritts:train)").
      batches_per_epoch: this process's batches per epoch (the plan's).
      tokenized: whether batches carry token sequences (the CTC check applies).
      batch_size: rows per batch of this process (for messages).
      log_level: of the per-epoch line (an eval pipeline, rebuilt at every evaluation,
        logs at DEBUG).
    """

    def __init__(self, name: str, *, batches_per_epoch: int, tokenized: bool,
                 batch_size: int, early_batches: int = EARLY_BATCHES,
                 log_level: int = logging.INFO):
        self.name, self.tokenized, self.batch_size = name, tokenized, batch_size
        self.log_level = log_level
        self.batches_per_epoch = batches_per_epoch
        self.early = max(1, min(early_batches, batches_per_epoch))
        self.kept: collections.Counter[str] = collections.Counter()
        self._epoch_kept: collections.Counter[str] = collections.Counter()
        self._epoch_skipped: collections.Counter[str] = collections.Counter()
        self._seen = 0  # batches since this iterator (re)started
        self._kept_since_start = 0
        self._tokens_since_start = 0
        self._epoch_from_start = False  # whether this epoch was observed from its first batch
        self.load_skipped: dict[str, int] = {}

    def restart(self, position: int, kept: Mapping[str, float]) -> None:
        """Continue from ``position`` batches delivered with cumulative counts ``kept``."""
        self.kept = collections.Counter({k: kept[k] for k in KEPT_KEYS if k in kept})
        self._epoch_kept.clear()
        self._epoch_skipped.clear()
        self._seen = self._kept_since_start = self._tokens_since_start = 0
        self._epoch_from_start = position % self.batches_per_epoch == 0

    def add(self, position: int, kept: Mapping[str, float], skipped: Mapping[str, int]) -> None:
        """Count one delivered batch (``position``: batches delivered including it); log
        and check at the end of an epoch. Raises ``EmptyPipelineError`` (module doc)."""
        if (position - 1) % self.batches_per_epoch == 0:
            self._epoch_from_start = True
            self._epoch_kept.clear()
            self._epoch_skipped.clear()
        self.kept.update(kept)
        self._epoch_kept.update(kept)
        self._epoch_skipped.update(skipped)
        self._seen += 1
        rows = int(kept.get("whole", 0) + kept.get("cropped", 0))
        self._kept_since_start += rows
        self._tokens_since_start += int(kept.get("tokens", 0))
        epoch_end = position % self.batches_per_epoch == 0 and self._epoch_from_start
        if epoch_end:  # the exact check: every utterance of an epoch
            self._end_epoch(position // self.batches_per_epoch - 1)
        elif self._seen == self.early:
            self._check_early()

    def _check_early(self) -> None:
        if not self._kept_since_start:
            raise EmptyPipelineError(
                f"{self.name}: every utterance of the first {self._seen} batches "
                f"({self._seen * self.batch_size} rows) was skipped: "
                f"{_reasons(self._epoch_skipped)}{self._load_note()}; see the warnings "
                "above for the files. Nothing to train on")
        if self.tokenized and not self._tokens_since_start:
            log.warning("%s: none of the %d utterances of the first %d batches has a complete "
                        "transcript (%d cropped): CTC has had nothing to learn from so far",
                        self.name, self._kept_since_start, self._seen,
                        int(self._epoch_kept.get("cropped", 0)))

    def _end_epoch(self, epoch: int) -> None:
        kept, skipped = dict(self._epoch_kept), dict(self._epoch_skipped)
        log.log(self.log_level, "%s, epoch %d: %s", self.name, epoch,
                kept_summary(kept, skipped, tokenized=self.tokenized))
        rows = int(kept.get("whole", 0) + kept.get("cropped", 0))
        if not rows:
            raise EmptyPipelineError(
                f"{self.name}: every utterance of epoch {epoch} was skipped "
                f"({_reasons(skipped)}{self._load_note()}); see the warnings above for the "
                "files. Nothing to train on")
        if self.tokenized and not kept.get("tokens", 0):
            raise EmptyPipelineError(
                f"{self.name}: no utterance of epoch {epoch} has a complete transcript to "
                f"train CTC on: {kept_summary(kept, skipped, tokenized=True)}. Cropped "
                "utterances (longer than max_seconds) carry no CTC target: raise max_seconds, "
                "or train without phonemes")

    def _load_note(self) -> str:
        if not any(self.load_skipped.values()):
            return ""
        return f"; at load time: {_reasons(self.load_skipped)}"


def plan_summary(name: str, durations: np.ndarray, keep: np.ndarray, max_seconds: float,
                 long_utterances: str, *, tokenized: bool = False) -> str:
    """What the duration rules do to ``durations`` (seconds; 0 for unknown/unreadable),
    before any audio is read: kept whole, cropped to ``max_seconds``, skipped as too long."""
    durations = np.asarray(durations, np.float64)
    long = durations > max_seconds
    whole = keep & ~long
    parts = [f"{name}: {len(durations)} utterances ({format_seconds(durations.sum())}); "
             f"{int(whole.sum())} fit max_seconds={max_seconds:g} and are used whole "
             f"({format_seconds(durations[whole].sum())})"]
    if long.any() and long_utterances == "crop":
        parts.append(f"{int(long.sum())} are longer and are cropped to {max_seconds:g} s "
                     f"({format_seconds(long.sum() * max_seconds)} kept of "
                     f"{format_seconds(durations[long].sum())}"
                     + ("; their transcripts are not used)" if tokenized else ")"))
    elif long.any():
        parts.append(f"{int(long.sum())} are longer and are skipped "
                     f"({format_seconds(durations[long].sum())})")
    return ", ".join(parts)
