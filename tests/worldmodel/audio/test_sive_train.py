"""``python -m worldmodel.train audio-sive``: the real command on a tiny corpus (phonemes
and speakers), its resolved config, checkpoints and an exact resume."""

import json

import pytest

from tests.worldmodel.audio.runs import SHARED_RUNS, run_command, sive_flags, train_losses


@SHARED_RUNS
@pytest.mark.slow  # two runs of the real command beside the session's SIVE run
def test_trains_checkpoints_and_resumes_exactly(audio_corpus, audio_runs, tmp_path):
    run, out = audio_runs["sive"]
    cache = audio_runs["cache"]
    assert "done at step 4" in out and "sive/ctc" in out
    cfg = json.load(open(run / "config.json"))
    assert cfg["encoder"]["vocab"] > 2 and cfg["data"]["phoneme_vocab"].endswith(".json")
    assert len(cfg["data"]["speakers"]) == 3
    run_command(sive_flags(audio_corpus, tmp_path, "part", 2), cache)
    run_command(sive_flags(audio_corpus, tmp_path, "part", 4, "--resume"), cache)
    full, part = train_losses(run), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data, RNG, weights and reversal counter after the resume
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.audio.sive.evaluate import format_table
    from worldmodel.audio.sive.evaluate import main as eval_main

    result = eval_main(["--run", str(run), "--json", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == result
    assert result["unseen_speakers"] == 1 and result["speakers"] == 4
    assert result["per_unseen"] is not None and result["per"] >= 0.0
    assert 0.0 <= result["probe_content"] <= 1.0 and 0.0 <= result["probe_mel"] <= 1.0
    assert 0.0 <= result["frame_probe_content"] <= 1.0
    assert result["probe_speakers"] >= 2 and "probe ratio" in format_table(result)
