"""``python -m worldmodel.train speaker-encoder``: the real command on a tiny corpus,
its speaker table, checkpoints, an exact resume and the verification eval; the
dispatcher's errors."""

import json
import os

import pytest

from tests.worldmodel.audio.runs import run_command, train_losses
from worldmodel import train as wm_train


def test_dispatcher_lists_the_models_and_refuses_others(capsys):
    wm_train.main([])
    out = capsys.readouterr().out
    assert "speaker-encoder" in out and "audio-sive" in out
    with pytest.raises(SystemExit) as e:
        wm_train.main(["no-such-model"])
    assert e.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def _train(corpus, run_dir, name, steps, cache, *extra):
    return run_command(
        ["speaker-encoder", "--data.source.kind", "corpus", "--data.source.path",
         str(corpus), "--batch-size", "4", "--data.segment-seconds", "1.0",
         "--steps", str(steps), "--train.optim.total-steps", "4",
         "--train.optim.warmup-steps", "1", "--train.checkpoint.every", "2",
         "--train.logging.log-every", "1", "--train.eval-every", "2",
         "--train.eval-batches", "1", "--train.run-dir", str(run_dir),
         "--run-name", name, *extra], cache)


@pytest.mark.slow  # three runs of the real command (one compile, then cache hits)
def test_trains_checkpoints_and_resumes_exactly(audio_corpus, tmp_path):
    cache = tmp_path / "cache"
    out = _train(audio_corpus, tmp_path, "full", 4, cache)
    assert "done at step 4" in out and "aam/loss" in out
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    speakers = cfg["data"]["speakers"]
    assert len(speakers) == 3 and speakers == sorted(speakers)  # one speaker held out
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == ["2", "4"]

    _train(audio_corpus, tmp_path, "part", 2, cache)
    _train(audio_corpus, tmp_path, "part", 4, cache, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    assert set(full) >= {1, 2, 3, 4}
    for step in (3, 4):  # after the resume: same data, same RNG, same weights
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.audio.speaker.evaluate import main as eval_main

    result = eval_main(["--run", str(tmp_path / "full"), "--json", str(tmp_path / "v.json")])
    assert json.loads((tmp_path / "v.json").read_text()) == result
    assert result["unseen_speakers"] == 1 and result["target_trials"] > 0
    assert 0.0 <= result["eer"] <= 1.0 and "identification_accuracy" in result
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        eval_main(["--run", str(audio_corpus.parent / "not-a-run")])
