"""What every speech source is, and the load-time checks every loader runs on its rows.

A source is what a grain pipeline reads: ``__len__`` and ``__getitem__(i) -> record``
(grain's ``RandomAccessDataSource`` protocol), records as in ``common.data.records``.
Sources hold metadata only; decoding audio is the pipeline's job
(``common.data.bad_input.decode_record`` in its workers), so a source of a million
utterances is a list of small dicts and pickles cheaply into worker processes.
Streamed hub datasets are a ``StreamingSource`` instead (iterable, not random-access).

Every loader checks its metadata rows at load time (``check_rows`` below): a row whose
audio file is missing, or whose header cannot be read, is bad input, handled by
``BadInputConfig.mode``: "skip" counts it in the source's ``load_stats`` and logs a
line naming the file and the metadata row; "strict" raises ``BadInputError`` naming
both. Durations come from the metadata when it has them, else from the file header
(a cheap header read with soundfile) when ``probe_durations`` is on, since length
bucketing needs them. Problems only decoding can see (NaN, silence, too short) are
left to ``decode_record``.

The loaders (``common.data.layouts``, ``common.data.hf``, the corpus) build on this
module; ``common.data.sources`` names and opens them.
"""

from __future__ import annotations

import io
import logging
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import soundfile as sf

from common.data.bad_input import BadInputConfig, BadInputError, Skipped, SkipStats
from common.data.records import DataError, check_record

log = logging.getLogger(__name__)

# Header reads are I/O bound and libsndfile releases the GIL: a few threads hide latency
# on network file systems without oversubscribing a small machine.
_PROBE_THREADS = 8


class RecordSource:
    """A random-access sequence of utterance records (grain ``RandomAccessDataSource``).

    Args:
      records: record dicts (``common.data.records.FIELDS`` plus any extra fields);
        ids must be unique.
      name: names the source in logs, errors and ``repr`` (grain uses ``repr`` in its
        checkpoints, so it is stable: name and length only).
      load_stats: what the loader skipped at load time (missing or unreadable files).

    ``source[i]`` returns a fresh shallow copy of record ``i`` (pipelines may add keys).
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], name: str, *,
                 load_stats: SkipStats | None = None):
        self.name = name
        self.load_stats = load_stats if load_stats is not None else SkipStats()
        self._records: list[dict[str, Any]] = [dict(r) for r in records]
        seen: dict[str, int] = {}
        for i, rec in enumerate(self._records):
            check_record(rec)
            if rec["id"] in seen:
                raise DataError(f"{name}: duplicate record id {rec['id']!r} "
                                f"(records {seen[rec['id']]} and {i})")
            seen[rec["id"]] = i
        self._durations = np.array([float(r["duration"]) for r in self._records], np.float64)
        self._durations.flags.writeable = False

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._records[operator.index(index)])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, len={len(self)})"

    @property
    def durations(self) -> np.ndarray:
        """float64 ``[N]`` seconds per record (-1.0 where unknown), read-only."""
        return self._durations

    def speakers(self) -> list[str]:
        """Sorted distinct non-empty speaker ids."""
        return sorted({r["speaker"] for r in self._records if r["speaker"]})

    def languages(self) -> list[str]:
        """Sorted distinct non-empty language codes."""
        return sorted({r["language"] for r in self._records if r["language"]})

    def select(self, indices: Sequence[int], name: str | None = None) -> RecordSource:
        """A source of the records at ``indices`` (in that order), sharing ``load_stats``."""
        return RecordSource([self._records[operator.index(i)] for i in indices],
                            name or self.name, load_stats=self.load_stats)


class StreamingSource:
    """An iterable, not random-access, source: a streamed HF ``IterableDataset``.

    What a pipeline can do with it: iterate records (``iter(source)``), shuffle
    approximately with a bounded buffer (``shuffle``), give each process its own part
    (``shard``), and resume: ``iterator()`` returns an iterator whose
    ``get_state``/``set_state`` wrap datasets' own resumable state (a JSON dict), which is
    what ``common.train.checkpoint`` saves. It cannot shuffle globally, checkpoint by
    index, know its length, or bucket by duration ahead of time (durations are -1 unless
    the dataset has a duration column); use a map-style source for those.

    Args:
      dataset: a ``datasets.IterableDataset`` (audio columns already ``decode=False``).
      name: names the source in logs and errors.
      to_record: turns one example (and its running index) into a record, or ``None``
        to drop it (a missing file under skip mode); it raises under strict mode.
      load_stats: counts what ``to_record`` skipped.
    """

    is_random_access = False

    def __init__(self, dataset: Any, name: str,
                 to_record: Callable[[Mapping[str, Any], int], dict[str, Any] | None], *,
                 load_stats: SkipStats | None = None):
        self.dataset, self.name, self._to_record = dataset, name, to_record
        self.load_stats = load_stats if load_stats is not None else SkipStats()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iterator()

    def __repr__(self) -> str:
        return f"StreamingSource(name={self.name!r})"

    def iterator(self) -> StreamIterator:
        """A resumable iterator over the records (see ``StreamIterator``)."""
        return StreamIterator(self)

    def shuffle(self, seed: int, buffer_size: int = 1000) -> StreamingSource:
        """Shuffle shard order and within a ``buffer_size`` window (datasets' shuffle)."""
        return self._with(self.dataset.shuffle(seed=seed, buffer_size=buffer_size))

    def shard(self, num_shards: int, index: int) -> StreamingSource:
        """Part ``index`` of ``num_shards`` (each process reads its own part)."""
        from datasets.distributed import split_dataset_by_node

        return self._with(split_dataset_by_node(self.dataset, rank=index,
                                                world_size=num_shards))

    def _with(self, dataset: Any) -> StreamingSource:
        return StreamingSource(dataset, self.name, self._to_record,
                               load_stats=self.load_stats)


class StreamIterator:
    """Iterates a ``StreamingSource``; ``get_state``/``set_state`` give JSON-able resumption.

    The state is datasets' ``IterableDataset.state_dict()`` (exact for unshuffled
    streams; with a shuffle buffer datasets restarts the buffer, so resumption is
    approximate) plus the count of examples read.
    """

    def __init__(self, source: StreamingSource):
        self._source = source
        self._count = 0
        self._it: Iterator[Any] | None = None

    def __iter__(self) -> StreamIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = iter(self._source.dataset)
        while True:
            example = next(self._it)
            self._count += 1
            rec = self._source._to_record(example, self._count - 1)
            if rec is not None:
                return rec

    def get_state(self) -> dict[str, Any]:
        return {"hf": self._source.dataset.state_dict(), "count": self._count}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._source.dataset.load_state_dict(state["hf"])
        self._count = int(state["count"])
        self._it = None


# ------------------------------------------------------------------------ row checks


def reject(path: str, reason: str, where: str, bad: BadInputConfig, stats: SkipStats) -> None:
    """Handle one bad metadata row: raise (strict) or count and log it (skip)."""
    if bad.mode == "strict":
        raise BadInputError(path, reason, where)
    stats.skip(Skipped(path, reason, where))


def _probe(rec: Mapping[str, Any]) -> tuple[float, str, str]:
    """(seconds, bad reason or "", detail) from the audio header of ``rec``."""
    path = str(rec["audio_path"])
    blob = rec.get("audio_bytes")
    try:
        # SoundFile reads the header only; sf.info also formats a description (~1.5x slower).
        with sf.SoundFile(io.BytesIO(blob) if blob is not None else path) as info:
            frames, rate = info.frames, info.samplerate
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError) as e:
        try:
            empty = (len(blob) if blob is not None else os.path.getsize(path)) == 0
        except OSError:  # removed since the existence check
            empty = False
        return -1.0, ("empty" if empty else "unreadable"), ("0 bytes" if empty else str(e))
    if frames <= 0:
        return 0.0, "empty", "zero audio frames"
    return frames / rate, "", ""


def check_rows(rows: Iterable[tuple[dict[str, Any], str]], *, bad: BadInputConfig,
               stats: SkipStats, probe_durations: bool = True) -> list[dict[str, Any]]:
    """Keep the rows whose audio exists (and, when probed, has a readable header).

    ``rows`` are ``(record, where)`` pairs; ``where`` names the metadata file and row
    for messages. Records with ``audio_bytes`` are not looked up on disk. Records whose
    duration is unknown (< 0) get it from the header when ``probe_durations``; an
    unreadable or zero-frame header is bad input then. Returns the kept records in order.
    """
    present: list[tuple[dict[str, Any], str]] = []
    for rec, where in rows:
        if rec.get("audio_bytes") is None and not os.path.isfile(rec["audio_path"]):
            reject(rec["audio_path"], "missing", where, bad, stats)
        else:
            present.append((rec, where))
    if not probe_durations:
        return [rec for rec, _ in present]
    todo = [i for i, (rec, _) in enumerate(present) if rec["duration"] < 0]
    with ThreadPoolExecutor(_PROBE_THREADS) as pool:
        probed = dict(zip(todo, pool.map(lambda i: _probe(present[i][0]), todo), strict=True))
    kept = []
    for i, (rec, where) in enumerate(present):
        if i in probed:
            seconds, reason, detail = probed[i]
            if reason:
                reject(rec["audio_path"], reason, f"{where}: {detail}", bad, stats)
                continue
            rec["duration"] = seconds
        kept.append(rec)
    return kept


def require_some(records: Sequence[Any], total: int, name: str, stats: SkipStats) -> None:
    """Raise ``DataError`` when every one of ``total`` (> 0) metadata rows was bad input:
    a wrong root or an unsupported audio format, not a few broken clips."""
    if total and not records:
        raise DataError(f"{name}: all {total} rows are bad input ({stats.summary()}); "
                        "see the warnings above for the files")
