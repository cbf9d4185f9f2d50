"""``tokenizer.alpha.eval`` on the tiny trained run, and its metrics on known cases."""

import json

import numpy as np
import pytest

from tokenizer.alpha import metrics as M
from tokenizer.alpha.eval import main


def test_si_sdr_known_cases(rng):
    x = rng.standard_normal(16000)
    assert M.si_sdr(x, 0.3 * x) > 70  # scale-invariant: a scaled copy is perfect
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    noise -= np.dot(noise, x - x.mean()) / np.dot(x - x.mean(), x - x.mean()) * (x - x.mean())
    noise *= np.linalg.norm(x - x.mean()) / np.linalg.norm(noise) / 10  # orthogonal, -20 dB
    assert M.si_sdr(x, x + noise) == pytest.approx(20.0, abs=1e-6)


def test_ctc_greedy_and_edit_distance():
    assert M.ctc_greedy([0, 3, 3, 0, 3, 5, 5, 0, 0]) == [3, 3, 5]
    assert M.ctc_greedy([0, 0]) == []
    assert M.edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert M.edit_distance([1, 2, 3], [2, 3]) == 1
    assert M.edit_distance([], [4, 5]) == 2
    assert M.edit_distance([1, 9, 3, 4], [1, 2, 3]) == 2  # kitten/sitting-style mix


def test_perceptual_metrics(rng):
    if not all(M.perceptual_available().values()):
        pytest.skip("pesq/pystoi not installed: uv sync --group eval")
    t = np.arange(24000 * 2) / 24000
    speechy = (np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
               + 0.3 * np.sin(2 * np.pi * 1200 * t)).astype(np.float32) * 0.3
    noisy = speechy + 0.1 * rng.standard_normal(speechy.size).astype(np.float32)
    clean_pesq, noisy_pesq = M.pesq_wb(speechy, speechy, 24000), M.pesq_wb(speechy, noisy, 24000)
    assert clean_pesq > 4.0 and noisy_pesq < clean_pesq
    assert M.stoi(speechy, speechy, 24000) == pytest.approx(1.0, abs=1e-3)
    assert M.stoi(speechy, noisy, 24000) < 0.99
    assert M.pesq_wb(np.zeros(24000), np.zeros(24000), 24000) is None  # no speech: no score


@pytest.mark.slow  # the trained run (a train subprocess)
@pytest.mark.xdist_group("alpha_run")
def test_eval_report(alpha_run, tmp_path, capsys):
    run_dir, _ = alpha_run
    report = main(["--run", str(run_dir), "--batch-size", "4", "--json",
                   str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert report["step"] == 4 and report["split"] == "validation"
    assert report["utterances"] >= 5 and report["seconds"] > 5
    assert report["skipped"] == {}  # every validation utterance fits max_seconds
    for key in ("mel_distance", "stft_distance", "si_sdr_db"):
        assert np.isfinite(report[key]), key
    assert report["mel_distance"] > 0
    assert 1.0 <= report["pesq_wb"] <= 4.7 and 0 <= report["stoi"] <= 1
    vocab = json.loads((run_dir / "config.json").read_text())["quantizer"]["phoneme_vocab"]
    assert report["bitrate_bps"] == pytest.approx(50 * (np.log2(vocab) + 8))
    assert set(report["streams"]) == {"phoneme", "bsq"}
    for s in report["streams"].values():
        assert 0 < s["usage"] <= 1 and 1 <= s["perplexity"] <= s["codebook_size"]
    assert 0 <= report["phoneme_accuracy"] <= 1 and report["phoneme_error_rate"] >= 0
    out = capsys.readouterr().out
    assert "mel_distance" in out and "phoneme_accuracy" in out and "report: " in out
