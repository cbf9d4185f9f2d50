"""The world model's audio trainers run as a user runs them: ``python -m worldmodel.train
MODEL FLAGS`` in a subprocess on one CPU device (the test process simulates 8), on a
tiny 16 kHz corpus with one held-out speaker."""

import json
import os
import subprocess
import sys

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
