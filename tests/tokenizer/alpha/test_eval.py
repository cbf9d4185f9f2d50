"""``tokenizer.alpha.eval`` on the tiny trained run, and its metrics on known cases."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from common.data.records import DataError
from common.data.sources import SourceConfig
from common.data.vocab import Vocab
from tests.tokenizer.alpha.test_model import micro
from tokenizer.alpha.eval import main
from tokenizer.alpha.evaluation import eval_config, evaluate, open_eval_source
from tokenizer.alpha.inference import AlphaTokenizer
from tokenizer.alpha.model import AlphaCodec
from tokenizer.codec.cli import UsageError


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


# --------------------------------------------------------------------- plain audio, small splits


def _tones(root, n, seconds=0.4, sr=16000, transcripts=None):
    """``n`` tones in a plain audio folder (no transcripts unless ``transcripts`` gives
    metadata fields per file: then a metadata.jsonl carries them)."""
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sr)) / sr
    for i in range(n):
        sf.write(root / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t))
                 .astype(np.float32), sr)
    if transcripts is not None:
        (root / "metadata.jsonl").write_text("".join(
            json.dumps({"file_name": f"u{i}.wav", "phonemes": "", "text": "", **t}) + "\n"
            for i, t in enumerate(transcripts)))
    return root


def _micro_tokenizer(tmp_path):
    """The micro codec (8 kHz, stage-1 codebook of 6) and a 6-symbol phoneme vocabulary."""
    cfg = micro()
    vocab = Vocab(["a", "b"]).save(tmp_path / "phonemes.json")
    # No held-out slice of split-less folders: "validation" is then missing on purpose.
    source = dataclasses.replace(cfg.data.source, holdout=0.0)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, phoneme_vocab=str(vocab),
                                                            source=source))
    return AlphaTokenizer(AlphaCodec(cfg, rngs=nnx.Rngs(0)), cfg, batch_size=2), cfg


@pytest.mark.slow  # compiles the micro codec's eval step for two batch sizes (~10 s)
def test_plain_audio_and_a_split_smaller_than_a_batch(tmp_path, caplog):
    tok, cfg = _micro_tokenizer(tmp_path)
    root = _tones(tmp_path / "plain", 3)
    ecfg, vocab = eval_config(cfg, kind="folder", path=str(root), batch_size=8,
                              max_seconds=20.0)
    assert vocab is not None  # the run's vocabulary fits; the folder has no transcripts
    # The run's eval split is "validation"; a plain folder has only "train": all of it.
    with caplog.at_level(logging.INFO):
        source, split = open_eval_source(ecfg.data.source, "validation", or_all=True)
    assert split == "" and len(source) == 3 and "evaluating all of it" in caplog.text
    report = evaluate(tok, ecfg, split=split, vocab=vocab, perceptual=False, source=source)
    assert report["utterances"] == 3  # 3 of a batch of 8: the padding rows are masked out
    assert report["skipped"] == {} and report["notes"] == {"resampled": 3}
    assert "phoneme_error_rate" not in report
    assert report["phoneme_note"] == ("the evaluated audio has no transcripts (phonemes "
                                      "or text)")
    for key in ("mel_distance", "stft_distance", "si_sdr_db"):
        assert np.isfinite(report[key]), key
    # Phonemes on one, text on another (phonemized as training does), nothing on the
    # third: two are scored, the note says so. One utterance a batch gives the same
    # reconstruction numbers: padding rows do not leak.
    _tones(root, 3, transcripts=[{"phonemes": "abba"}, {"text": "Hello there."}, {}])
    one, _ = eval_config(cfg, kind="folder", path=str(root), batch_size=1, max_seconds=20.0)
    single = evaluate(tok, one, split="", vocab=vocab, perceptual=False)
    for key in ("mel_distance", "stft_distance", "si_sdr_db"):
        assert single[key] == pytest.approx(report[key], rel=1e-5), key
    assert single["streams"] == report["streams"]
    assert single["utterances"] == 3 and single["phoneme_scored"] == 2
    assert 0 <= single["phoneme_accuracy"] <= 1 and single["phoneme_error_rate"] >= 0
    assert single["phoneme_note"].startswith("1 of 3 utterances have no phonemes to score")


def test_batch_size_must_be_positive():
    with pytest.raises(UsageError, match="--batch-size must be >= 1"):
        main(["--batch-size", "0"])  # before any run is loaded


def test_no_utterance_short_enough_says_what_to_change(tmp_path):
    tok, cfg = _micro_tokenizer(tmp_path)
    root = _tones(tmp_path / "long", 2, seconds=1.5)
    ecfg, vocab = eval_config(cfg, kind="folder", path=str(root), batch_size=8,
                              max_seconds=1.0)
    with pytest.raises(ValueError, match=r"all 2 utterances of split '' .* longer than "
                                         r"--max-seconds 1\.0 \(the shortest is 1\.5 s\): "
                                         r"raise --max-seconds"):
        evaluate(tok, ecfg, split="", vocab=vocab, perceptual=False)


def test_open_eval_source_whole_or_a_split(tmp_path):
    lj = tmp_path / "LJSpeech"
    (lj / "wavs").mkdir(parents=True)
    _tones(lj / "wavs", 6)
    (lj / "metadata.csv").write_text("".join(f"u{i}|Text {i}.|Text {i}.\n" for i in range(6)))
    src = SourceConfig(kind="ljspeech", path=str(lj), holdout=0.0)
    whole, split = open_eval_source(src, "")
    assert split == "" and len(whole) == 6  # LJSpeech has "train" only: that is all of it
    with pytest.raises(DataError, match="no 'validation' split"):
        open_eval_source(src, "validation")
    held = dataclasses.replace(src, holdout=0.3)
    parts = [open_eval_source(held, s)[0] for s in ("train", "validation", "test")]
    whole, _ = open_eval_source(held, "")  # train + validation + test, each once
    assert sorted(r["id"] for r in whole) == sorted(r["id"] for p in parts for r in p)
    assert len(whole) == 6

    folder = tmp_path / "folder"
    _tones(folder / "train", 2)
    _tones(folder / "test", 1)
    whole, split = open_eval_source(SourceConfig(kind="folder", path=str(folder)), "")
    assert split == "" and len(whole) == 3
    tests, split = open_eval_source(SourceConfig(kind="folder", path=str(folder)), "test",
                                    or_all=True)
    assert split == "test" and len(tests) == 1  # a split that exists is taken as asked


@pytest.mark.slow  # the trained run (a train subprocess)
@pytest.mark.xdist_group("alpha_run")
def test_eval_cli_on_plain_audio_and_the_help_example(alpha_run, tmp_path, capsys):
    run_dir, _ = alpha_run
    root = _tones(tmp_path / "plain", 3, sr=24000)
    # The help's own example: a folder, the whole of it, a batch larger than the split.
    report = main(["--run", str(run_dir), "--source-kind", "folder", "--source-path",
                   str(root), "--split", "", "--no-perceptual"])
    assert report["utterances"] == 3 and report["split"] == ""
    assert report["phoneme_note"] == ("the evaluated audio has no transcripts (phonemes "
                                      "or text)")
    assert (run_dir / "eval" / "step4-all.json").is_file()
    out = capsys.readouterr().out
    assert "phoneme_note" in out and "mel_distance" in out
