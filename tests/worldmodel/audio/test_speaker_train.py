"""``python -m worldmodel.train speaker-encoder``: the real command on a tiny corpus,
its speaker table, checkpoints and an exact resume; the dispatcher's errors."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from common.data.corpus import CorpusConfig, build_corpus
from tests.settings import ROOT, TEST_XLA_FLAGS
from worldmodel import train as wm_train

CORPUS = CorpusConfig(hours=1 / 45, sample_rate=16000, languages=("en-us",), num_speakers=4,
                      seed=7, valid_fraction=0.2, test_fraction=0.2, holdout_speakers=1,
                      holdout_languages=(), shard_size=4, workers=1, max_sentences=1)


def test_dispatcher_lists_the_models_and_refuses_others(capsys):
    wm_train.main([])
    assert "speaker-encoder" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        wm_train.main(["no-such-model"])
    assert e.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("speaker") / "corpus"
    build_corpus(dataclasses.replace(CORPUS, out=out))
    return out


def _train(corpus, run_dir, name, steps, cache, *extra):
    flags = ["speaker-encoder", "--data.source.kind", "corpus", "--data.source.path",
             str(corpus), "--batch-size", "4", "--data.segment-seconds", "1.0",
             "--steps", str(steps), "--train.optim.total-steps", "4",
             "--train.optim.warmup-steps", "1", "--train.checkpoint.every", "2",
             "--train.logging.log-every", "1", "--train.eval-every", "2",
             "--train.eval-batches", "1", "--train.run-dir", str(run_dir),
             "--run-name", name, *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled",
               TRC_CACHE_DIR=str(cache), XLA_FLAGS=TEST_XLA_FLAGS, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "worldmodel.train", *flags], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise AssertionError(f"train exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _losses(run: str) -> dict[int, float]:
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "eval/loss" not in r}


@pytest.mark.slow  # three runs of the real command (one compile, then cache hits)
def test_trains_checkpoints_and_resumes_exactly(corpus, tmp_path):
    cache = tmp_path / "cache"
    out = _train(corpus, tmp_path, "full", 4, cache)
    assert "done at step 4" in out and "aam/loss" in out
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    speakers = cfg["data"]["speakers"]
    assert len(speakers) == 3 and speakers == sorted(speakers)  # one speaker held out
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == ["2", "4"]

    _train(corpus, tmp_path, "part", 2, cache)
    _train(corpus, tmp_path, "part", 4, cache, "--resume")
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert set(full) >= {1, 2, 3, 4}
    for step in (3, 4):  # after the resume: same data, same RNG, same weights
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.audio.speaker.evaluate import main as eval_main

    result = eval_main(["--run", str(tmp_path / "full"), "--json", str(tmp_path / "v.json")])
    assert json.loads((tmp_path / "v.json").read_text()) == result
    assert result["unseen_speakers"] == 1 and result["target_trials"] > 0
    assert 0.0 <= result["eer"] <= 1.0 and "identification_accuracy" in result
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        eval_main(["--run", str(corpus.parent / "not-a-run")])
