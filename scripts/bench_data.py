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

import argparse
import dataclasses
import os
import pathlib
import tempfile
import threading
import time

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cpus = os.cpu_count() or 1
    p.add_argument("--corpus-hours", type=float, default=0.05,
                   help="size of each generated corpus (hours of audio)")
    p.add_argument("--corpus-workers", type=int, nargs="*", default=sorted({1, cpus}),
                   help="corpus generator processes to time (none: skip generation; "
                        "then --corpus is required)")
    p.add_argument("--corpus", type=pathlib.Path, default=None,
                   help="benchmark the pipeline on this existing corpus instead of the "
                        "one just generated")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                   help="grain worker processes (0: decode in the main process)")
    p.add_argument("--modes", nargs="+", default=["segment", "bucketed"],
                   choices=["segment", "bucketed"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=30, help="timed batches after the first")
    p.add_argument("--sample-rate", type=int, default=24_000)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--bucket-seconds", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0])
    p.add_argument("--frame-hop", type=int, default=480)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--step-ms", type=float, default=2500.0,
                   help="training step time to compare with (default: alpha tiny GAN step "
                        "on a 2-core CPU)")
    p.add_argument("--step-batch", type=int, default=4, help="examples per training step")
    p.add_argument("--step-seconds", type=float, default=2.5,
                   help="seconds of audio per example in the training step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.corpus_workers and args.corpus is None:
        p.error("--corpus-workers given no value: pass --corpus DIR to benchmark on")
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
