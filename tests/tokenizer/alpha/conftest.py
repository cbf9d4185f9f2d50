"""A tiny espeak corpus and a few-step trained alpha run, shared by the train, infer and
eval tests (``xdist_group("alpha_run")`` keeps them on one worker, so it trains once).

The corpus is ``tests/tokenizer/corpus.py``'s; the run is ``tests/tokenizer/alpha/runs.py``'s
``run_train``: the real command in a subprocess, W&B offline as a user gets it.
"""

import dataclasses

import pytest

from common.data.corpus import build_corpus
from tests.tokenizer.alpha.runs import run_train, train_flags
from tests.tokenizer.corpus import CORPUS


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
