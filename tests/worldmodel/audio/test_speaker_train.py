"""``python -m worldmodel.train speaker-encoder``: the real command on a tiny corpus,
its speaker table, checkpoints, an exact resume and the verification eval; the
dispatcher's errors."""

import json
import os

import pytest

from tests.worldmodel.audio.runs import (
    SHARED_RUNS,
    run_command,
    speaker_flags,
    train_losses,
)
from worldmodel import train as wm_train


def test_dispatcher_lists_the_models_and_refuses_others(capsys):
    wm_train.main([])
    out = capsys.readouterr().out
    assert "speaker-encoder" in out and "audio-sive" in out
    with pytest.raises(SystemExit) as e:
        wm_train.main(["no-such-model"])
    assert e.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


@SHARED_RUNS
@pytest.mark.slow  # two runs of the real command beside the session's speaker run
def test_trains_checkpoints_and_resumes_exactly(audio_corpus, audio_runs, tmp_path):
    run, out = audio_runs["speaker"]
    cache = audio_runs["cache"]
    assert "done at step 4" in out and "aam/loss" in out
    cfg = json.load(open(run / "config.json"))
    speakers = cfg["data"]["speakers"]
    assert len(speakers) == 3 and speakers == sorted(speakers)  # one speaker held out
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]

    run_command(speaker_flags(audio_corpus, tmp_path, "part", 2), cache)
    run_command(speaker_flags(audio_corpus, tmp_path, "part", 4, "--resume"), cache)
    full, part = train_losses(run), train_losses(tmp_path / "part")
    assert set(full) >= {1, 2, 3, 4}
    for step in (3, 4):  # after the resume: same data, same RNG, same weights
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.audio.speaker.evaluate import main as eval_main

    result = eval_main(["--run", str(run), "--json", str(tmp_path / "v.json")])
    assert json.loads((tmp_path / "v.json").read_text()) == result
    assert result["unseen_speakers"] == 1 and result["target_trials"] > 0
    assert 0.0 <= result["eer"] <= 1.0 and "identification_accuracy" in result
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        eval_main(["--run", str(audio_corpus.parent / "not-a-run")])
