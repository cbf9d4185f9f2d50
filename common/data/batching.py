"""Batches with left padding and valid masks, and length-bucketed batch plans.

Left padding: an utterance of ``n`` samples in a batch of length ``N`` fills samples
``N - n .. N - 1``; zeros come first. A causal model then sees every sequence end at
the same position, and the valid frames of a downsampled rate are the LAST
``ceil(n / hop)`` frames (``N`` is a multiple of every hop, so frame ``k`` covers
samples ``k * hop .. (k + 1) * hop - 1`` and the first valid frame may hold some
padding). Token sequences are left-padded the same way with id 0 (``<blank>``/pad).

A batch plan decides, at the index level and before any audio is read, which
utterances go together and how long their batch is. Per epoch: shuffle the indices with
the seed, sort windows of many batches by duration (neighbours in a batch have similar
lengths, so little padding), cut into global batches, shuffle the batches (so lengths
do not come in runs), and pad each batch's length up to a bucket boundary (so ``jit``
sees a few shapes). Process ``p`` of ``P`` takes the ``p``-th slice of every global
batch: all processes step through the same global batches, with the same length.
"""

from __future__ import annotations

import hashlib
import math
import sys
import threading
from collections.abc import Sequence

import numpy as np

PAD_INDEX = -1  # a plan entry that pads a batch (the row gets example_valid False)
_SALT_PLAN = 3


def round_up(x: int, multiple: int) -> int:
    return -(-int(x) // multiple) * multiple


def hop_multiple(hops: Sequence[int]) -> int:
    """The least common multiple of ``hops`` (1 if none): batch lengths are multiples of it."""
    return math.lcm(*map(int, hops)) if hops else 1


def frame_valid(lengths: np.ndarray, n: int, hop: int) -> np.ndarray:
    """bool ``[B, n // hop]``: the last ``ceil(lengths / hop)`` frames of each row."""
    frames = n // hop
    n_valid = -(-np.asarray(lengths, np.int64) // hop)
    return np.arange(frames)[None, :] >= (frames - n_valid)[:, None]


def left_pad_audio(wavs: Sequence[np.ndarray | None], n: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Waveforms ``[n_i]`` (``None``: a padding row) -> ``audio`` float32 ``[B, n, 1]``,
    ``audio_valid`` bool ``[B, n]``, ``audio_lengths`` int32 ``[B]``.

    Rows longer than ``n`` are an error (crop them first).
    """
    audio = np.zeros((len(wavs), n, 1), np.float32)
    lengths = np.zeros((len(wavs),), np.int32)
    for i, w in enumerate(wavs):
        if w is None:
            continue
        if w.ndim != 1 or w.shape[0] > n:
            raise ValueError(f"row {i}: waveform of shape {w.shape} does not fit length {n}")
        lengths[i] = w.shape[0]
        if w.shape[0]:
            audio[i, n - w.shape[0]:, 0] = w
    valid = np.arange(n)[None, :] >= (n - lengths)[:, None]
    return audio, valid, lengths


def left_pad_tokens(seqs: Sequence[np.ndarray | None], length: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences ``[L_i]`` (``None``: a padding row) -> int32 ``[B, length]`` left-padded
    with 0, and bool ``[B, length]`` valid."""
    ids = np.zeros((len(seqs), length), np.int32)
    valid = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        if s is None or not len(s):
            continue
        if len(s) > length:
            raise ValueError(f"row {i}: {len(s)} tokens do not fit length {length}")
        ids[i, length - len(s):] = s
        valid[i, length - len(s):] = True
    return ids, valid


def collate_audio(wavs: Sequence[np.ndarray | None], n: int, hops: Sequence[int]
                  ) -> dict[str, np.ndarray]:
    """The audio part of a batch: ``audio``, ``audio_valid``, ``audio_lengths`` and a
    ``valid_<hop>`` bool ``[B, n // hop]`` per hop. ``n`` must be a multiple of each hop."""
    for h in hops:
        if n % h:
            raise ValueError(f"batch length {n} is not a multiple of hop {h}")
    audio, valid, lengths = left_pad_audio(wavs, n)
    out = {"audio": audio, "audio_valid": valid, "audio_lengths": lengths}
    for h in hops:
        out[f"valid_{h}"] = frame_valid(lengths, n, h)
    return out


class BatchPlan:
    """Which source indices form each batch, per epoch, for one process.

    Args:
      indices: int ``[M]`` source indices to draw from (the usable ones).
      global_batch: utterances per global batch (a multiple of ``process_count``).
      process_index, process_count: this process takes slice ``process_index`` of each
        global batch.
      seed, shuffle: ``shuffle=False`` keeps the order of ``indices`` (apart from the
        duration sort) and of the batches.
      num_epochs: None repeats forever (each epoch reshuffled).
      drop_remainder: drop the last, partial global batch of an epoch; otherwise pad it
        with ``PAD_INDEX`` (eval: every utterance once).
      length: the fixed batch length in samples (segment mode), or None to bucket.
      durations: float seconds ``[M]`` aligned with ``indices`` (bucket mode).
      boundaries: sorted bucket lengths in samples; the last one bounds every batch.
      sample_rate: converts durations to samples.
      window_batches: batches per sort window (bucket mode).

    Item ``i`` (``len`` is ``num_epochs * batches_per_epoch``, or ``sys.maxsize``) is
    ``{"epoch": int, "indices": int64 [global_batch // process_count], "length": int}``.
    """

    def __init__(self, indices: np.ndarray, global_batch: int, *, process_index: int = 0,
                 process_count: int = 1, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, drop_remainder: bool = True,
                 length: int | None = None, durations: np.ndarray | None = None,
                 boundaries: Sequence[int] = (), sample_rate: int = 16000,
                 window_batches: int = 32):
        self.indices = np.asarray(indices, np.int64)
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not a multiple of the process "
                             f"count {process_count}")
        if (length is None) == (durations is None):
            raise ValueError("BatchPlan needs either a fixed length or durations")
        if durations is not None and len(durations) != len(self.indices):
            raise ValueError(f"{len(durations)} durations for {len(self.indices)} indices")
        if durations is not None and not boundaries:
            raise ValueError("bucketing needs at least one boundary")
        self.global_batch, self.local_batch = global_batch, global_batch // process_count
        self.process_index, self.process_count = process_index, process_count
        self.seed, self.shuffle, self.num_epochs = seed, shuffle, num_epochs
        self.length = length
        self.durations = None if durations is None else np.asarray(durations, np.float64)
        self.boundaries = np.asarray(sorted(boundaries), np.int64)
        self.sample_rate, self.window = sample_rate, max(1, window_batches) * global_batch
        m = len(self.indices)
        self.batches_per_epoch = m // global_batch if drop_remainder else -(-m // global_batch)
        if self.batches_per_epoch == 0:
            raise ValueError(f"{m} usable utterances make no full batch of {global_batch} "
                             "(lower batch_size or set drop_remainder=False)")
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict:  # pickled into grain workers: no lock, no cache
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_cache")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock, self._cache = threading.Lock(), {}

    def __len__(self) -> int:
        if self.num_epochs is None:
            return sys.maxsize
        return self.num_epochs * self.batches_per_epoch

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"plan item {i} out of range [0, {len(self)})")
        epoch, j = divmod(int(i), self.batches_per_epoch)
        batches, lengths = self.epoch_plan(epoch)
        lo = self.process_index * self.local_batch
        return {"epoch": epoch, "indices": batches[j, lo:lo + self.local_batch].copy(),
                "length": int(lengths[j])}

    @property
    def shapes(self) -> list[int]:
        """The batch lengths (samples) this plan can produce."""
        return [self.length] if self.length is not None else [int(b) for b in self.boundaries]

    @property
    def fingerprint(self) -> str:
        """A digest of what decides the plan (not the process index: all processes share
        one plan), checked when an iterator state is restored."""
        h = hashlib.sha1()
        h.update(np.asarray([self.global_batch, self.seed, self.shuffle, self.batches_per_epoch,
                             -1 if self.length is None else self.length, self.window],
                            np.int64).tobytes())
        h.update(self.indices.tobytes())
        h.update(self.boundaries.tobytes())
        return h.hexdigest()[:16]

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Global batches of ``epoch``: int64 ``[batches, global_batch]`` positions into
        the source (``PAD_INDEX`` pads) and int64 ``[batches]`` lengths in samples."""
        with self._lock:
            if epoch not in self._cache:
                if len(self._cache) >= 2:  # workers move forward: keep the current epoch
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = self._make_epoch(epoch)
            return self._cache[epoch]

    def _make_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, _SALT_PLAN])
        m, bg = len(self.indices), self.global_batch
        order = rng.permutation(m) if self.shuffle else np.arange(m)
        if self.durations is not None:
            for lo in range(0, m, self.window):
                win = order[lo:lo + self.window]
                order[lo:lo + self.window] = win[np.argsort(self.durations[win], kind="stable")]
        nb = self.batches_per_epoch
        pos = np.full((nb * bg,), -1, np.int64)
        take = min(m, nb * bg)
        pos[:take] = order[:take]
        pos = pos.reshape(nb, bg)
        if self.shuffle:
            pos = pos[rng.permutation(nb)]
        batches = np.where(pos >= 0, self.indices[np.maximum(pos, 0)], PAD_INDEX)
        if self.length is not None:
            return batches, np.full((nb,), self.length, np.int64)
        seconds = np.where(pos >= 0, self.durations[np.maximum(pos, 0)], 0.0).max(axis=1)
        need = np.ceil(seconds * self.sample_rate).astype(np.int64)
        bucket = np.minimum(np.searchsorted(self.boundaries, need), len(self.boundaries) - 1)
        return batches, self.boundaries[bucket]
