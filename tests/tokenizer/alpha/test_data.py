"""The alpha codec on real layouts: transcripts phonemized into a vocabulary of the run's
own (decided before the model is built, kept in the run), long utterances cropped without
a CTC target, a plain folder of audio held out for validation."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import soundfile as sf

from common.data import espeak
from common.data.records import DataError
from common.data.sources import SourceConfig
from common.data.vocab import Vocab
from tests.tokenizer.alpha.runs import run_train, train_flags
from tokenizer.alpha.config import PRESETS
from tokenizer.alpha.data import make_data, resolve_data

TEXTS = {"train-clean-100": ["The birch canoe slid on the smooth planks.",
                             "Glue the sheet to the dark blue background.",
                             "It's easy to tell the depth of a well.",
                             "These days a chicken leg is a rare dish, and the juice of "
                             "lemons makes fine punch for everyone at the long table."],
         "dev-clean": ["Rice is often served in round bowls.",
                       "The box was thrown beside the parked truck."]}


def make_libritts(root):
    """A LibriTTS tree of espeak speech (22.05 kHz) with normalised transcripts; the last
    training utterance is longer than 3 s."""
    for subset, texts in TEXTS.items():
        d = root / subset / "19" / "198"
        d.mkdir(parents=True)
        for k, text in enumerate(texts):
            utt = f"19_198_{subset[:3]}{k}_00000{k}"
            sf.write(d / f"{utt}.wav", espeak.synthesize(text), espeak.SAMPLE_RATE)
            (d / f"{utt}.normalized.txt").write_text(text)
    return root


def config(source, run_dir, **data):
    cfg = PRESETS["tiny"]
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, source=source, batch_size=2, max_seconds=3.0,
                                      bucket_seconds=(3.0,), **data),
        train=dataclasses.replace(cfg.train, run_dir=str(run_dir)))


def test_a_libritts_run_phonemizes_into_a_vocabulary_of_its_own(tmp_path, caplog):
    root = make_libritts(tmp_path / "LibriTTS")
    source = SourceConfig(kind="libritts", path=str(root))
    with caplog.at_level(logging.INFO):
        cfg = resolve_data(config(source, tmp_path / "runs"))
    # Decided before the model: the training split's phonemized transcripts, saved in the
    # run (the config keeps the path: eval and inference rebuild the same codebook).
    path = tmp_path / "runs" / cfg.train.run_name / "phoneme_vocab.json"
    vocab = Vocab.load(path)
    assert cfg.data.phoneme_vocab == str(path.resolve())
    assert cfg.quantizer.phoneme_vocab == len(vocab)
    us = espeak.Voice("en-us")
    assert vocab == Vocab.from_texts(espeak.phonemize(t, us) for t in TEXTS["train-clean-100"])
    assert "phoneme vocabulary: " in caplog.text
    train, make_eval = make_data(cfg)
    whole = cropped = 0
    for _ in range(4):  # two epochs of two batches
        b = next(train)
        for row in np.flatnonzero(b["example_valid"]):
            ids = b["phonemes"][row][b["phonemes_valid"][row]]
            if len(ids):
                whole += 1
                assert vocab.decode(ids) in {espeak.phonemize(t, us)
                                             for t in TEXTS["train-clean-100"]}
            else:  # the long one, cropped to 3 s: audio without a CTC target
                cropped += 1
                assert b["audio_lengths"][row] == 3 * cfg.sample_rate
    assert whole and cropped
    train.close()
    ev = next(iter(make_eval()))
    assert ev["phonemes_valid"][ev["example_valid"]].any(axis=1).all()
    # A resumed run reads its own vocabulary back (the checkpoint's codebook), even if
    # the data would now give another.
    Vocab([*vocab.symbols, "ʘ"]).save(path)
    again = dataclasses.replace(config(source, tmp_path / "runs"), train=cfg.train)
    assert resolve_data(again).quantizer.phoneme_vocab == len(vocab) + 1


def test_a_plain_folder_trains_as_it_is(tmp_path):
    """No train/ or validation/, no transcripts: a held-out slice validates, and the
    stage-1 codebook trains without CTC when its size is given (the issue's command)."""
    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    for i in range(20):
        sf.write(tmp_path / "wavs" / f"{i:02d}.wav",
                 (0.1 * rng.standard_normal(24000)).astype(np.float32), 24000)
    source = SourceConfig(kind="folder", path=str(tmp_path / "wavs"),
                          cache_dir=str(tmp_path / "cache"))
    base = config(source, tmp_path / "runs")
    with pytest.raises(DataError, match=r"none of \d+ utterances has phonemes .*"
                                        r"--quantizer.phoneme-vocab N"):
        resolve_data(base)
    cfg = resolve_data(dataclasses.replace(
        base, quantizer=dataclasses.replace(base.quantizer, phoneme_vocab=64)))
    assert cfg.quantizer.phoneme_vocab == 64 and not cfg.data.phoneme_vocab
    train, make_eval = make_data(cfg)
    b = next(train)
    assert "phonemes" not in b and b["example_valid"].all()
    train.close()
    held = sum(int(e["example_valid"].sum()) for e in make_eval())
    assert 1 <= held < 20


@pytest.mark.slow  # compiles and trains the tiny codec: end to end
@pytest.mark.xdist_group("alpha_run")
def test_train_command_on_libritts_trains_ctc(tmp_path, alpha_cache):
    """``python -m tokenizer.alpha.train --data.source.kind libritts --data.source.path
    DIR``, nothing else about phonemes: the CTC stage trains on espeak's phonemes."""
    root = make_libritts(tmp_path / "LibriTTS")
    flags = train_flags(root, tmp_path / "runs", 2, "--train.run-name", "ltts",
                        "--data.max-seconds", "3", "--data.bucket-seconds", "3")
    flags[flags.index("corpus")] = "libritts"
    out = run_train(flags, alpha_cache)
    assert out.startswith("done at step 2") and "gen/ctc" in out
    run_dir = tmp_path / "runs" / "ltts"
    saved = json.loads((run_dir / "config.json").read_text())
    vocab = Vocab.load(run_dir / "phoneme_vocab.json")
    assert saved["data"]["phoneme_vocab"] == str((run_dir / "phoneme_vocab.json").resolve())
    assert saved["quantizer"]["phoneme_vocab"] == len(vocab) > 20
