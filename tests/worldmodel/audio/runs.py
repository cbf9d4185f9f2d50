"""The world model's audio trainers run as a user runs them: ``python -m worldmodel.train
MODEL FLAGS`` in a subprocess on one CPU device (the test process simulates 8), on a
tiny 16 kHz corpus with one held-out speaker.

The SIVE and speaker-encoder runs are trained once per session (``conftest``) and
shared: their own tests resume from them, the CVAE's stand on them. Tests that use
them carry ``SHARED_RUNS`` so that one xdist worker runs them all."""

import json
import os
import subprocess
import sys

import pytest

from common.data.corpus import CorpusConfig
from tests.settings import ROOT, TEST_XLA_FLAGS

CORPUS = CorpusConfig(hours=1 / 45, sample_rate=16000, languages=("en-us",), num_speakers=4,
                      seed=7, valid_fraction=0.2, test_fraction=0.2, holdout_speakers=1,
                      holdout_languages=(), shard_size=4, workers=1, max_sentences=1)


def run_command(flags, cache) -> str:
    """``python -m worldmodel.train FLAGS`` on one CPU device; returns its stdout."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled",
               TRC_CACHE_DIR=str(cache), XLA_FLAGS=TEST_XLA_FLAGS, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "worldmodel.train", *flags], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise AssertionError(f"train exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def train_losses(run) -> dict[int, float]:
    """The training loss of every logged step of ``run`` (from ``metrics.jsonl``)."""
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "eval/loss" not in r}


SHARED_RUNS = pytest.mark.xdist_group("wm_audio_runs")


def sive_flags(corpus, run_dir, name, steps, *extra) -> list[str]:
    """``audio-sive`` on the tiny corpus: 4-step schedules, checkpoints every 2 steps."""
    return ["audio-sive", "--data.source.kind", "corpus", "--data.source.path", str(corpus),
            "--batch-size", "4", "--data.max-seconds", "4.0", "--data.bucket-seconds", "4.0",
            "--steps", str(steps), "--train.optim.total-steps", "4",
            "--train.optim.warmup-steps", "1", "--adversary.warmup-steps", "4",
            "--train.checkpoint.every", "2", "--train.logging.log-every", "1",
            "--train.eval-every", "2", "--train.eval-batches", "1",
            "--train.run-dir", str(run_dir), "--run-name", name, *extra]


def speaker_flags(corpus, run_dir, name, steps, *extra) -> list[str]:
    """``speaker-encoder`` on the tiny corpus (1 s crops), as ``sive_flags``."""
    return ["speaker-encoder", "--data.source.kind", "corpus", "--data.source.path",
            str(corpus), "--batch-size", "4", "--data.segment-seconds", "1.0",
            "--steps", str(steps), "--train.optim.total-steps", "4",
            "--train.optim.warmup-steps", "1", "--train.checkpoint.every", "2",
            "--train.logging.log-every", "1", "--train.eval-every", "2",
            "--train.eval-batches", "1", "--train.run-dir", str(run_dir),
            "--run-name", name, *extra]
