"""Tiny alpha training runs: the real command, ``python -m tokenizer.alpha.train``, in a
subprocess on one CPU device (the test process simulates 8), with a compilation cache
(``$TRC_CACHE_DIR/jax``) shared by the runs of the session. Used by the ``alpha_run``
fixtures (conftest.py) and by the tests that train runs of their own (test_train.py)."""

import os
import subprocess
import sys

from tests.settings import ROOT, TEST_XLA_FLAGS


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
