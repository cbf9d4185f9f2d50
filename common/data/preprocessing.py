"""Preprocess a speech source into ArrayRecord feature shards: resumable and parallel
(the library behind ``python -m common.data.preprocess``).

Source indices ``[s * shard_size, (s + 1) * shard_size)`` make shard ``s``; worker ``w``
of ``n`` writes the shards with ``s % n == w``. Workers are independent processes (on
one machine or many) sharing the output directory; by default ``w, n`` are
``jax.process_index(), jax.process_count()`` when ``jax.distributed`` is initialised
(``--distributed`` initialises it: one process per accelerator for extractors that run
a model), else 0 and 1. On one host with several accelerators, start one process per
device with its own ``--worker-id`` (and e.g. ``CUDA_VISIBLE_DEVICES``).

Each record is decoded once at ``--sample-rate`` (``decode_record``: broken inputs are
skipped and counted, or stop the run under ``--source.bad-input.mode strict``; the
index's ``skipped`` counts them by reason together with the files the source's loader
dropped, ``skipped_at_load``, and the console line gives the same counts),
resampled for extractors that want another rate, and stored as one example: ``id``,
``speaker``, ``language``, ``audio_path`` (str), ``duration`` (float, decoded seconds),
``num_samples``, ``sample_rate`` (int), and the extractors' features (``common.data.features``;
the built-ins are in ``common.data.extractors``). Layout and file format: ``common.data.shards``.

Resuming: rerun the same command. Finished shards (those with a sidecar) are kept,
a worker deletes the partial files of its own unfinished shards and rewrites them, so
no record is lost or written twice. ``plan.json`` pins what the directory holds; a
rerun whose source, shard size, sample rate or extractors differ stops with the
differing fields. ``index.json`` is written by whichever worker finds every shard
finished, and by ``--finalize``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro
from tqdm.auto import tqdm

from common.audio.io import resample
from common.data import shards
from common.data.bad_input import BadInputConfig, Skipped, SkipStats, decode_record
from common.data.features import (
    ExtractorSetup,
    check_output,
    spec_to_json,
)
from common.data.sources import SourceConfig

log = logging.getLogger(__name__)

BASE_SPEC = {"id": ((), "str"), "speaker": ((), "str"), "language": ((), "str"),
             "audio_path": ((), "str"), "duration": ((), "float"), "num_samples": ((), "int"),
             "sample_rate": ((), "int")}
# What a resumed run must agree on with the plan already in the directory.
_PLAN_KEYS = ("num_records", "ids_sha256", "sample_rate", "shard_size", "num_shards",
              "bad_input", "extractors")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Write ArrayRecord feature shards of a speech source (resumable, parallel).

    Attributes:
      output: the shard directory (created; required).
      source: which data (``common.data.sources.SourceConfig``; its ``bad_input``
        decides skip or strict for broken audio).
      split: the source split to read.
      extractors: registered names (logmel, f0, text, audio) or "package.module:factory".
      extractor_arg: NAME.KEY=VALUE for an extractor's factory, repeatable
        (``--extractor-arg logmel.n_mels=100 --extractor-arg f0.method=pyin``).
      sample_rate: decode rate (24 kHz like the corpus and the codecs); also the default
        rate of extractors that take one.
      shard_size: source records per shard.
      worker_id: this process's index among the workers (None: jax.process_index() if
        jax.distributed is initialised, else 0).
      num_workers: how many workers share the shards (None: jax.process_count(), else 1).
      distributed: call ``jax.distributed.initialize()`` first (multi-process runs).
      threads: records processed concurrently within a worker; helps where decoding and
        extractors release the GIL (file reads, soxr, large numpy operations, a model on
        an accelerator). Processes (``--num-workers``) scale more surely.
      finalize: only (re)write index.json from the finished shards.
      progress: show a tqdm progress bar.
    """

    output: str = ""
    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    split: str = "train"
    extractors: tuple[str, ...] = ("logmel", "f0", "text")
    extractor_arg: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    sample_rate: int = 24000
    shard_size: int = 1000
    worker_id: int | None = None
    num_workers: int | None = None
    distributed: bool = False
    threads: int = 1
    finalize: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.shard_size < 1 or self.threads < 1 or self.sample_rate <= 0:
            raise ValueError("PreprocessConfig: shard_size >= 1, threads >= 1 and "
                             f"sample_rate > 0 required, got {self.shard_size}, "
                             f"{self.threads}, {self.sample_rate}")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one worker did. ``index`` is the written index, or None while other workers'
    shards are unfinished."""

    worker_id: int
    num_workers: int
    records: int
    skipped: Mapping[str, int]
    seconds: float
    wall: float
    shards_written: tuple[int, ...]
    shards_done_before: tuple[int, ...]
    index: dict[str, Any] | None

    def summary(self) -> str:
        """One line; its skip counts are the index's when this worker's run covers every
        shard (one worker, nothing done before), and the index's totals follow when
        they differ (other workers' shards, shards of an earlier run)."""
        rate = self.seconds / self.wall if self.wall > 0 else 0.0
        where = "index pending (other workers' shards)"
        if self.index:
            where = "index.json written"
            mine = (self.records, dict(self.skipped))
            if mine != (self.index["count"], self.index["skipped"]):
                where += (f": {self.index['count']} records, "
                          f"{_tally(self.index['skipped'])} in all")
        return (f"preprocess worker {self.worker_id}/{self.num_workers}: {self.records} records, "
                f"{_tally(self.skipped)}, {self.seconds:.1f} s of audio in {self.wall:.1f} s "
                f"wall ({rate:.1f} audio-s/s); {len(self.shards_written)} shards written, "
                f"{len(self.shards_done_before)} already done; {where}")


def _tally(skipped: Mapping[str, int]) -> str:
    """The skip counts as a phrase, e.g. ``3 skipped (silent=1 unreadable=2)`` (the
    reason names of ``common.data.bad_input``)."""
    total = sum(skipped.values())
    reasons = " ".join(f"{k}={v}" for k, v in sorted(skipped.items()) if v)
    return f"{total} skipped" + (f" ({reasons})" if reasons else "")


# ----------------------------------------------------------------------------- workers


def worker_slot(worker_id: int | None, num_workers: int | None, distributed: bool = False
                ) -> tuple[int, int]:
    """``(worker_id, num_workers)``: as given, else jax's process index/count when
    ``jax.distributed`` is initialised (``distributed=True`` initialises it), else (0, 1)."""
    if distributed:
        import jax

        if not jax.distributed.is_initialized():
            jax.distributed.initialize()
    if worker_id is None and num_workers is None:
        jax = sys.modules.get("jax")  # not imported: nobody can have initialised it
        if jax is not None and jax.distributed.is_initialized():
            return jax.process_index(), jax.process_count()
        return 0, 1
    if worker_id is None or num_workers is None:
        raise ValueError("give both --worker-id and --num-workers, or neither")
    if not 0 <= worker_id < num_workers:
        raise ValueError(f"--worker-id must be in [0, {num_workers}), got {worker_id}")
    return worker_id, num_workers


# -------------------------------------------------------------------------------- plan


def ids_fingerprint(source: Sequence[Mapping[str, Any]], samples: int = 1024) -> str:
    """sha256 of the ids at up to ``samples`` evenly spaced indices (and the length):
    cheap even for sources whose ``__getitem__`` is slow, and enough to notice a rerun
    pointed at different or reordered data."""
    n = len(source)
    idx = np.unique(np.linspace(0, n - 1, min(n, samples)).astype(np.int64)) if n else []
    h = hashlib.sha256(str(n).encode())
    for i in idx:
        h.update(b"\n" + str(source[int(i)]["id"]).encode())
    return h.hexdigest()


def make_plan(source: Sequence[Mapping[str, Any]], setups: Sequence[ExtractorSetup], *,
              sample_rate: int, shard_size: int, bad_input: BadInputConfig,
              source_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-safe description of a run, stored as ``plan.json``."""
    features = spec_to_json(BASE_SPEC)
    for s in setups:
        features.update(spec_to_json(s.extractor.spec()))
    clash = set(BASE_SPEC) & {k for s in setups for k in s.extractor.spec()}
    if clash:
        raise ValueError(f"extractor keys {sorted(clash)} clash with the base keys "
                         f"{list(BASE_SPEC)}")
    n = len(source)
    return {"format": shards.FORMAT, "source": dict(source_info or {"name": repr(source)}),
            "num_records": n, "ids_sha256": ids_fingerprint(source),
            "sample_rate": sample_rate, "shard_size": shard_size,
            "num_shards": math.ceil(n / shard_size), "bad_input": dataclasses.asdict(bad_input),
            "load_skipped": load_skipped(source),
            "extractors": [s.describe() for s in setups], "features": features}


def load_skipped(source: Any) -> dict[str, int]:
    """What the source's loader dropped before any shard saw it (files missing or with
    unreadable headers; ``RecordSource.load_stats``), by reason."""
    stats = getattr(source, "load_stats", None)
    return dict(sorted(stats.skipped.items())) if isinstance(stats, SkipStats) else {}


def ensure_plan(out: Path, plan: Mapping[str, Any]) -> None:
    """Write ``plan.json``, or check a resumed run against the one there."""
    path = out / shards.PLAN_FILE
    if not path.exists():
        shards.write_json(path, plan)
        return
    old = shards.read_json(path)
    new = json.loads(json.dumps(plan))  # tuples -> lists, as stored
    # A policy field added since that run started (``truncated``) takes its default there.
    old["bad_input"] = {**dataclasses.asdict(BadInputConfig()), **old.get("bad_input", {})}
    diff = [k for k in _PLAN_KEYS if old.get(k) != new.get(k)]
    if diff:
        raise shards.ShardError(
            f"{path}: this run differs from the one that started {out} in {diff} "
            f"(was {[old.get(k) for k in diff if k != 'extractors']}); use a new --output "
            "or the original settings")


def _sidecar(out: Path, s: int, n: int) -> tuple[Path, Path]:
    name = shards.shard_name(s, n)
    return out / f"{name}.array_record", out / f"{name}.json"


def shard_finished(out: Path, s: int, n: int) -> bool:
    """A shard is finished exactly when its sidecar and data file both exist."""
    data, side = _sidecar(out, s, n)
    return side.exists() and data.exists()


def reset_shard(out: Path, s: int, n: int) -> None:
    """Delete an unfinished shard's leftovers (its tmp files, a data file without sidecar)."""
    data, side = _sidecar(out, s, n)
    for path in (data.with_name(data.name + ".tmp"), data, side):
        if path.exists():
            log.info("removing leftover %s", path)
            path.unlink()
    for tmp in out.glob(f"{side.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- records


class _Processor:
    """Decodes one record and runs the extractors: ``(id, seconds, bytes)`` or Skipped."""

    def __init__(self, source, setups: Sequence[ExtractorSetup], sample_rate: int,
                 bad_input: BadInputConfig, stats: SkipStats):
        self.source, self.setups, self.sample_rate = source, setups, sample_rate
        self.bad_input, self.stats = bad_input, stats
        self.specs = [(s.spec, s.extractor.spec()) for s in setups]

    def __call__(self, i: int) -> tuple[str, float, bytes] | Skipped:
        rec = self.source[i]
        dec = decode_record(rec, self.sample_rate, self.bad_input, self.stats)
        if isinstance(dec, Skipped):
            return dec
        n = int(dec["audio"].shape[0])
        example: dict[str, Any] = {
            "id": str(rec["id"]), "speaker": str(rec.get("speaker", "")),
            "language": str(rec.get("language", "")), "audio_path": str(rec["audio_path"]),
            "duration": n / self.sample_rate, "num_samples": n, "sample_rate": self.sample_rate}
        at_rate = {self.sample_rate: dec}
        for setup, (name, spec) in zip(self.setups, self.specs, strict=True):
            rate = setup.extractor.sample_rate
            if rate is not None and rate not in at_rate:
                at_rate[rate] = {**dec, "sample_rate": rate,
                                 "audio": resample(dec["audio"], self.sample_rate, rate)}
            feats = setup.extractor(at_rate[self.sample_rate if rate is None else rate])
            check_output(name, spec, feats, example["id"])
            example.update(feats)
        return example["id"], example["duration"], shards.serialize(example)


def _ordered_map(fn: Callable[[int], Any], items: range, threads: int) -> Iterator[Any]:
    """``map(fn, items)`` in order, ``threads`` at a time; at most ``4 * threads`` results
    wait in memory (a shard's features can be large)."""
    if threads == 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending: deque[concurrent.futures.Future] = deque()
        try:
            for i in items:
                pending.append(pool.submit(fn, i))
                if len(pending) >= 4 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def write_shard(out: Path, s: int, num_shards: int, shard_size: int, proc: _Processor,
                threads: int = 1, on_record: Callable[[], None] | None = None,
                features: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write shard ``s`` and then its sidecar (``features``: the spec it records);
    returns the sidecar dict."""
    start, stop = s * shard_size, min(len(proc.source), (s + 1) * shard_size)
    data, side = _sidecar(out, s, num_shards)
    ids, skipped, seconds = [], [], 0.0
    before = Counter(proc.stats.notes)
    with shards.ShardWriter(data) as writer:
        for result in _ordered_map(proc, range(start, stop), threads):
            if isinstance(result, Skipped):
                skipped.append({"path": result.path, "reason": result.reason,
                                "detail": result.detail})
            else:
                ids.append(result[0])
                seconds += result[1]
                writer.write(result[2])
            if on_record is not None:
                on_record()
        writer.commit()
    sidecar = {"shard": s, "file": data.name, "range": [start, stop], "count": len(ids),
               "seconds": seconds, "skipped": dict(Counter(r["reason"] for r in skipped)),
               "notes": dict(Counter(proc.stats.notes) - before), "ids": ids,
               "skipped_files": skipped, "features": dict(features or {})}
    shards.write_json(side, sidecar)  # the shard counts as finished from here on
    return sidecar


# ------------------------------------------------------------------------------ index


def finalize(out: str | Path, *, require: bool = False) -> dict[str, Any] | None:
    """Write ``index.json`` if every shard of the plan is finished; return it.

    Returns None when some are not (``require=True``: raise ``ShardError`` naming them).
    Checks each data file's record count against its sidecar.
    """
    out = Path(out)
    plan = shards.read_json(out / shards.PLAN_FILE)
    n = plan["num_shards"]
    missing = [s for s in range(n) if not shard_finished(out, s, n)]
    if missing:
        if require:
            names = [shards.shard_name(s, n) for s in missing[:5]]
            raise shards.ShardError(f"{out}: {len(missing)} of {n} shards unfinished "
                                    f"({', '.join(names)}{', ...' if len(missing) > 5 else ''})")
        return None
    entries, skipped, notes, seen, dups = [], Counter(), Counter(), set(), 0
    for s in range(n):
        data, side = _sidecar(out, s, n)
        car = shards.read_json(side)
        count = shards.num_records(data)
        if count != car["count"] or len(car["ids"]) != count:
            raise shards.ShardError(f"{data}: holds {count} records, its sidecar {side.name} "
                                    f"says {car['count']}")
        skipped.update(car["skipped"])
        notes.update(car["notes"])
        dups += sum(i in seen for i in car["ids"])
        seen.update(car["ids"])
        entries.append({"file": data.name, "count": count, "seconds": car["seconds"],
                        "skipped": sum(car["skipped"].values())})
    if dups:
        log.warning("%s: %d duplicate ids across shards (the source repeats ids)", out, dups)
    at_load = plan.get("load_skipped", {})  # plans written before it was recorded lack it
    skipped.update(at_load)
    index = {k: v for k, v in plan.items() if k not in ("ids_sha256", "load_skipped")}
    index.update({
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "count": sum(e["count"] for e in entries),
        "seconds": sum(e["seconds"] for e in entries),
        # Every input the source listed and the shards lack, by reason: those its loader
        # dropped (``skipped_at_load``) and those decoding skipped (the shards' sidecars).
        "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values()),
        "skipped_at_load": dict(at_load),
        "notes": dict(sorted(notes.items())), "duplicate_ids": dups, "shards": entries})
    shards.write_json(out / shards.INDEX_FILE, index)
    return index


# -------------------------------------------------------------------------------- run


def preprocess(source: Sequence[Mapping[str, Any]], out: str | Path,
               setups: Sequence[ExtractorSetup], *, sample_rate: int = 24000,
               shard_size: int = 1000, worker_id: int = 0, num_workers: int = 1,
               bad_input: BadInputConfig = BadInputConfig(),
               source_info: Mapping[str, Any] | None = None, threads: int = 1,
               progress: bool = False) -> RunResult:
    """Write this worker's unfinished shards of ``source`` (any random-access sequence of
    records) into ``out``, then the index if every shard is finished."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(source, setups, sample_rate=sample_rate, shard_size=shard_size,
                     bad_input=bad_input, source_info=source_info)
    ensure_plan(out, plan)
    n = plan["num_shards"]
    mine = [s for s in range(n) if s % num_workers == worker_id]
    done = tuple(s for s in mine if shard_finished(out, s, n))
    todo = [s for s in mine if s not in done]
    for s in todo:
        reset_shard(out, s, n)
    total = sum(min(len(source), (s + 1) * shard_size) - s * shard_size for s in todo)
    stats = SkipStats()
    proc = _Processor(source, setups, sample_rate, bad_input, stats)
    records, seconds, written = 0, 0.0, []
    with tqdm(total=total, disable=not progress, unit="utt", dynamic_ncols=True,
              desc=f"worker {worker_id}/{num_workers}") as bar:
        for s in todo:
            car = write_shard(out, s, n, shard_size, proc, threads, on_record=bar.update,
                              features=plan["features"])
            records += car["count"]
            seconds += car["seconds"]
            written.append(s)
    index = finalize(out)
    # The loader's skips count once, with shard 0 (written once, by worker 0), so the
    # workers' counts over all runs add up to the index's.
    skipped = Counter(stats.skipped)
    if 0 in todo:
        skipped.update(plan["load_skipped"])
    return RunResult(worker_id, num_workers, records, dict(sorted(skipped.items())), seconds,
                     time.perf_counter() - t0, tuple(written), done, index)
