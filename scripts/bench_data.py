"""Benchmark the data side: the espeak corpus generator and the grain pipeline.

    uv run python scripts/bench_data.py                      # small corpus, 0/1/2 workers
    uv run python scripts/bench_data.py --workers 0 4 8 --batches 100 --step-ms 180
    uv run python scripts/bench_data.py --corpus ~/.cache/trc/corpus/espeak-24000hz-... \\
        --corpus-workers                                     # pipeline only, existing corpus

Three tables:

1. Corpus generation (``common.data.corpus.build_corpus``) of a small corpus into a
   temporary directory at each ``--corpus-workers`` value: seconds of audio written per
   wall second, and the real-time factor (wall / audio; < 1 is faster than real time).
2. The pipeline (``common.data.pipeline.make_pipeline``) over that corpus's train split at
   each ``--workers`` value, in segment mode (fixed crops, codec training) and in
   whole-utterance bucketed mode with phoneme tokens (CTC / TTS). The first batch (worker
   start-up) is timed on its own; the next ``--batches`` give batches/s and seconds of
   valid audio per second; ``fill`` is valid samples over padded samples.
3. The same rates against the training step's consumption: ``--step-ms`` per step of
   ``--step-batch`` x ``--step-seconds`` of audio (default: the alpha ``tiny`` GAN step on
   a laptop CPU; pass the figure measured on your device). Headroom above 1 means the
   pipeline outruns the trainer. In segment mode each row decodes a whole file before
   cropping, so the per-example headroom is the one to trust there.

Figures go to BENCHMARKS.md with the device and date.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import tempfile
import threading
import time
from typing import Literal

import tyro

from common import bench
from common.data.corpus import CorpusConfig, build_corpus, corpus_records
from common.data.pipeline import PipelineConfig, make_pipeline
from common.data.source_base import RecordSource


def bench_corpus(root: pathlib.Path, hours: float, workers: int, sample_rate: int,
                 seed: int) -> dict:
    t0 = time.perf_counter()
    summary = build_corpus(CorpusConfig(out=root, hours=hours, sample_rate=sample_rate,
                                        seed=seed, workers=workers))
    wall = time.perf_counter() - t0  # includes planning and metadata, unlike summary's
    audio_s = summary["hours"] * 3600.0
    return {"workers": summary["workers"], "utterances": summary["utterances"],
            "shards": summary["shards"], "audio_s": audio_s, "wall_s": wall,
            "audio_s_per_s": audio_s / wall, "per_worker": audio_s / wall / summary["workers"],
            "rtf": wall / audio_s, "speed_json": summary["speed"]}


def join_read_threads(timeout: float = 30.0) -> None:
    """Wait for the read threads of closed pipelines.

    ``PipelineIterator.close()`` shuts grain's read-thread pool down without waiting: the
    decodes already submitted still run. Left alone they would overlap the next
    measurement and, at the end, read files of the deleted temporary corpus.
    """
    for t in threading.enumerate():
        if t.name.startswith("grain-prefetch"):
            t.join(timeout)


def bench_pipeline(source: RecordSource, cfg: PipelineConfig, mode: str, batches: int) -> dict:
    sr = cfg.sample_rate
    t0 = time.perf_counter()
    with make_pipeline(source, cfg, train=True) as it:
        next(it)  # worker start-up and the first decode
        first_s = time.perf_counter() - t0
        valid = total = rows = 0
        t1 = time.perf_counter()
        for _ in range(batches):
            batch = next(it)
            valid += int(batch["audio_valid"].sum())
            total += int(batch["audio_valid"].size)
            rows += int(batch["example_valid"].sum())
        wall = time.perf_counter() - t1
        skipped = sum(it.stats.skipped.values())
    join_read_threads()
    return {"mode": mode, "workers": cfg.worker_count, "batch": cfg.batch_size,
            "first_batch_s": first_s, "batches_per_s": batches / wall,
            "examples_per_s": rows / wall, "audio_s_per_s": valid / sr / wall,
            "fill": valid / total if total else None,
            "ms_per_batch": wall / batches * 1e3, "skipped": skipped}


def consumption_rows(rows: list[dict], step_ms: float, step_batch: int,
                     step_seconds: float) -> list[dict]:
    step_s = step_ms / 1e3
    trainer_bps = 1.0 / step_s
    trainer_ex = step_batch / step_s
    trainer_audio = step_batch * step_seconds / step_s
    return [{"mode": r["mode"], "workers": r["workers"],
             "pipe_batches_per_s": r["batches_per_s"], "train_batches_per_s": trainer_bps,
             "pipe_ex_per_s": r["examples_per_s"], "train_ex_per_s": trainer_ex,
             "headroom_ex": r["examples_per_s"] / trainer_ex,
             "pipe_audio_s_per_s": r["audio_s_per_s"], "train_audio_s_per_s": trainer_audio,
             "headroom_audio": r["audio_s_per_s"] / trainer_audio} for r in rows]


@dataclasses.dataclass(frozen=True)
class Options:
    corpus_hours: float = 0.05
    """Size of each generated corpus (hours of audio)."""
    corpus_workers: tuple[int, ...] = tuple(sorted({1, os.cpu_count() or 1}))
    """Corpus generator processes to time (none: skip generation; then --corpus is required)."""
    corpus: pathlib.Path | None = None
    """Benchmark the pipeline on this existing corpus instead of the one just generated."""
    workers: tuple[int, ...] = (0, 1, 2)
    """Grain worker processes (0: decode in the main process)."""
    modes: tuple[Literal["segment", "bucketed"], ...] = ("segment", "bucketed")
    """Pipeline modes: fixed crops, or whole utterances in length buckets with phonemes."""
    batch_size: int = 8
    """Examples per pipeline batch."""
    batches: int = 30
    """Timed batches after the first."""
    sample_rate: int = 24_000
    """Corpus and pipeline sample rate (Hz)."""
    segment_seconds: float = 1.0
    """Crop length in segment mode."""
    max_seconds: float = 10.0
    """Longest utterance in bucketed mode."""
    bucket_seconds: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0)
    """Bucket boundaries in bucketed mode."""
    frame_hop: int = 480
    """Frame hop in samples: batch lengths are a multiple of it (a valid_<hop> mask)."""
    read_threads: int = 2
    """Pipeline read threads."""
    step_ms: float = 2500.0
    """Training step time to compare with (default: alpha tiny GAN step on a 2-core CPU)."""
    step_batch: int = 4
    """Examples per training step."""
    step_seconds: float = 2.5
    """Seconds of audio per example in the training step."""
    seed: int = 0
    """Corpus and pipeline seed."""


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    cpus = os.cpu_count() or 1
    if not args.corpus_workers and args.corpus is None:
        print("error: --corpus-workers given no value: pass --corpus DIR to benchmark on",
              file=sys.stderr)
        sys.exit(2)
    print(f"backend: {bench.describe_backend()}; {cpus} CPUs")

    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        corpus = args.corpus
        if args.corpus_workers:
            rows = []
            for w in args.corpus_workers:
                root = pathlib.Path(tmp) / f"corpus-w{w}"
                rows.append(bench_corpus(root, args.corpus_hours, w, args.sample_rate,
                                         args.seed))
                corpus = corpus or root  # every worker count writes the same files
            bench.print_table(rows, f"corpus generation ({args.corpus_hours} h target, "
                                    f"{args.sample_rate} Hz, espeak-ng, fresh process per "
                                    "shard)")

        records = corpus_records(corpus, "train")
        source = RecordSource(records, name="bench")
        hours = sum(r["duration"] for r in records) / 3600
        print(f"\npipeline source: {corpus} train split, {len(records)} utterances, "
              f"{hours * 60:.1f} min")
        base = PipelineConfig(sample_rate=args.sample_rate, batch_size=args.batch_size,
                              frame_hops=(args.frame_hop,), num_epochs=None, seed=args.seed,
                              read_threads=args.read_threads, process_index=0,
                              process_count=1)
        modes = {
            "segment": dict(segment_seconds=args.segment_seconds),
            "bucketed": dict(segment_seconds=None, max_seconds=args.max_seconds,
                             bucket_seconds=tuple(args.bucket_seconds),
                             phoneme_vocab=str(pathlib.Path(corpus) / "phoneme_vocab.json")),
        }
        rows = []
        for mode in args.modes:
            for w in args.workers:
                cfg = dataclasses.replace(base, **modes[mode], worker_count=w)
                rows.append(bench_pipeline(source, cfg, mode, args.batches))
        bench.print_table(rows, f"pipeline, train split (segment {args.segment_seconds} s; "
                                f"bucketed up to {args.max_seconds} s with phonemes), "
                                f"{args.batches} batches after the first")
        bench.print_table(
            consumption_rows(rows, args.step_ms, args.step_batch, args.step_seconds),
            f"against the training step ({args.step_ms:g} ms per {args.step_batch} x "
            f"{args.step_seconds:g} s; headroom > 1: the pipeline keeps up)")


if __name__ == "__main__":
    main()
