"""A tiny espeak corpus and a few-step trained alpha run, shared by the train, infer and
eval tests (``xdist_group("alpha_run")`` keeps them on one worker, so it trains once).

Training runs the real command, ``python -m tokenizer.alpha.train``, in a subprocess on
one CPU device (the test process simulates 8), with W&B offline as a user gets it and a
compilation cache (``$TRC_CACHE_DIR/jax``) shared by the runs of the session.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.data.corpus import CorpusConfig, build_corpus
from tests.conftest import TEST_XLA_FLAGS

SR = 24000
CORPUS = CorpusConfig(hours=1 / 45, sample_rate=SR, languages=("en-us", "de"),
                      num_speakers=4, seed=5, valid_fraction=0.25, test_fraction=0.0,
                      holdout_speakers=0, holdout_languages=(), shard_size=4, workers=1,
                      max_sentences=1)
ROOT = Path(__file__).resolve().parents[3]


def train_flags(corpus, run_dir, steps, *extra):
    """Flags of a tiny alpha run on ``corpus``: 2 utterances of up to 2.5 s a step, a
    narrower decoder, one MPD period, one MSD scale and one mel resolution (each costs
    compile time, not coverage), the discriminator from step 2, a checkpoint every 2
    steps, logs every step."""
    return ["--preset", "tiny", "--data.source.kind", "corpus",
            "--data.source.path", str(corpus), "--data.batch-size", "2",
            "--data.max-seconds", "2.5", "--data.bucket-seconds", "2.5",
            "--codec.decoder-channels", "16", "--disc.periods", "2", "--disc.msd-scales", "1",
            "--loss.mel-n-ffts", "256", "--loss.mel-n-mels", "40", "--gan.disc-start-step", "2",
            "--train.steps", str(steps), "--train.optim.warmup-steps", "1",
            # Both schedules span 4 steps whatever ``steps`` is: a 2-step run then compiles
            # the very step program of a 4-step one (a cache hit) and resumes into it.
            "--train.optim.total-steps", "4", "--disc-optim.total-steps", "4",
            "--train.run-dir", str(run_dir), "--train.checkpoint.every", "2",
            "--train.logging.log-every", "1", "--train.eval-every", "0", *extra]


def run_train(flags, cache_dir, *, wandb="disabled") -> str:
    """``python -m tokenizer.alpha.train FLAGS`` on one CPU device; returns its stdout."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE=wandb, TRC_CACHE_DIR=str(cache_dir),
               XLA_FLAGS=TEST_XLA_FLAGS, PYTHONPATH=str(ROOT))  # one device, as a user has
    proc = subprocess.run([sys.executable, "-m", "tokenizer.alpha.train", *flags], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise AssertionError(f"train exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def alpha_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("alpha") / "corpus"
    build_corpus(dataclasses.replace(CORPUS, out=out))
    return out


@pytest.fixture(scope="session")
def alpha_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("alpha_jax_cache")


@pytest.fixture(scope="session")
def alpha_run(alpha_corpus, alpha_cache, tmp_path_factory):
    """A 4-step trained tiny codec: ``(run_dir, stdout of train)``."""
    root = tmp_path_factory.mktemp("alpha_runs")
    out = run_train(train_flags(alpha_corpus, root, 4, "--train.run-name", "full"),
                    alpha_cache, wandb="offline")
    return root / "full", out
