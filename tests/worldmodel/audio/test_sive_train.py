"""``python -m worldmodel.train audio-sive``: the real command on a tiny corpus (phonemes
and speakers), its resolved config, checkpoints and an exact resume."""

import json

import pytest

from tests.worldmodel.audio.runs import run_command, train_losses


def _train(corpus, run_dir, name, steps, cache, *extra):
    return run_command(
        ["audio-sive", "--data.source.kind", "corpus", "--data.source.path", str(corpus),
         "--batch-size", "4", "--data.max-seconds", "4.0", "--data.bucket-seconds", "4.0",
         "--steps", str(steps), "--train.optim.total-steps", "4",
         "--train.optim.warmup-steps", "1", "--adversary.warmup-steps", "4",
         "--train.checkpoint.every", "2", "--train.logging.log-every", "1",
         "--train.eval-every", "2", "--train.eval-batches", "1",
         "--train.run-dir", str(run_dir), "--run-name", name, *extra], cache)


@pytest.mark.slow  # three runs of the real command (one compile, then cache hits)
def test_trains_checkpoints_and_resumes_exactly(audio_corpus, tmp_path):
    cache = tmp_path / "cache"
    out = _train(audio_corpus, tmp_path, "full", 4, cache)
    assert "done at step 4" in out and "sive/ctc" in out
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    assert cfg["encoder"]["vocab"] > 2 and cfg["data"]["phoneme_vocab"].endswith(".json")
    assert len(cfg["data"]["speakers"]) == 3
    _train(audio_corpus, tmp_path, "part", 2, cache)
    _train(audio_corpus, tmp_path, "part", 4, cache, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data, RNG, weights and reversal counter after the resume
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.audio.sive.evaluate import format_table
    from worldmodel.audio.sive.evaluate import main as eval_main

    result = eval_main(["--run", str(tmp_path / "full"), "--json", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == result
    assert result["unseen_speakers"] == 1 and result["speakers"] == 4
    assert result["per_unseen"] is not None and result["per"] >= 0.0
    assert 0.0 <= result["probe_content"] <= 1.0 and 0.0 <= result["probe_mel"] <= 1.0
    assert 0.0 <= result["frame_probe_content"] <= 1.0
    assert result["probe_speakers"] >= 2 and "probe ratio" in format_table(result)
