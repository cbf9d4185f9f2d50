"""``python -m worldmodel.train vocoder``: the real command on a tiny corpus, its
checkpoints, an exact resume, ``--gan`` (the shared discriminators switched on
mid-run), and ``python -m worldmodel.eval vocoder`` on the tiny checkpoint."""

import json
import os

import pytest

from tests.worldmodel.audio.runs import run_command, train_losses


def _train(corpus, run_dir, name, steps, cache, *extra):
    return run_command(
        ["vocoder", "--data.source.kind", "corpus", "--data.source.path", str(corpus),
         "--batch-size", "4", "--data.segment-seconds", "0.5", "--steps", str(steps),
         "--train.optim.total-steps", "4", "--train.optim.warmup-steps", "1",
         "--train.checkpoint.every", "2", "--train.logging.log-every", "1",
         "--train.eval-every", "2", "--train.eval-batches", "1",
         "--train.run-dir", str(run_dir), "--run-name", name, *extra], cache)


@pytest.mark.slow  # four runs of the real command and an eval
def test_trains_checkpoints_resumes_exactly_and_evaluates(audio_corpus, tmp_path):
    cache = tmp_path / "cache"
    out = _train(audio_corpus, tmp_path, "full", 4, cache)
    assert "done at step 4" in out and "mel" in out and "stft" in out
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    assert cfg["model"]["hop_length"] == cfg["features"]["hop_length"] == 160
    assert cfg["adversarial"] is False
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == ["2", "4"]

    _train(audio_corpus, tmp_path, "part", 2, cache)
    _train(audio_corpus, tmp_path, "part", 4, cache, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    assert set(full) >= {1, 2, 3, 4}
    for step in (3, 4):  # after the resume: same data, same RNG, same weights
        assert part[step] == full[step], (step, part[step], full[step])

    from worldmodel.eval import main as eval_main

    result = eval_main(["vocoder", "--run", str(tmp_path / "full"), "--max-utterances", "3",
                        "--json", str(tmp_path / "v.json")])
    assert json.loads((tmp_path / "v.json").read_text()) == result
    assert result["utterances"] == 3 and result["split"] == "test"
    assert 0 <= result["unseen_speaker_utterances"] <= 3
    assert result["mel_distance"] > 0 and result["mr_stft_distance"] > 0
    assert result["pesq_wb"] is None or 1.0 <= result["pesq_wb"] <= 4.7
    assert 0.0 <= result["stoi"] <= 1.0

    # --gan: the discriminators start at step 2 (a generator-only step first)
    out = _train(audio_corpus, tmp_path, "gan", 3, cache, "--gan",
                 "--gan.disc-start-step", "1")
    assert "done at step 3" in out and "gen/adv_loss" in out
    assert json.load(open(tmp_path / "gan" / "config.json"))["adversarial"] is True
    rows = [json.loads(x) for x in open(tmp_path / "gan" / "metrics.jsonl")]
    started = [r["disc/started"] for r in rows if "disc/started" in r]
    assert started[0] == 0.0 and started[-1] == 1.0
