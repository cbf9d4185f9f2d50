"""Phonemes for transcripts: espeak voices by language, and real layouts (LJSpeech,
LibriTTS, Common Voice, audio folders, HF datasets) phonemized through the pipeline."""

from __future__ import annotations

import collections
import dataclasses
import logging

import numpy as np
import pytest

from common.data import espeak
from common.data.phonemize import espeak_voice, phoneme_vocab_for, record_phonemes
from common.data.pipeline import PipelineConfig, iterate_eval
from common.data.pipeline_report import EmptyPipelineError
from common.data.records import DataError, make_record
from common.data.sources import SourceConfig, open_source
from common.data.vocab import Vocab
from tests.common.data.test_sources import (
    hub_like,
    make_audio_folder,
    make_common_voice,
    make_libritts,
    make_ljspeech,
)

SR = 16000


def test_espeak_voice_by_language_code():
    assert espeak_voice("en") == "en-us"  # LJSpeech/LibriTTS say "en"; the corpus voice
    assert espeak_voice("EN_us") == "en-us" and espeak_voice("en-GB-x-rp") == "en-gb-x-rp"
    assert espeak_voice("de") == "de" and espeak_voice("fr-FR") == "fr"
    assert espeak_voice("pt-BR") == "pt-br" and espeak_voice("zh-CN") == "cmn"
    assert espeak_voice("xx-YY") is None and espeak_voice("") is None


def _rec(**kw):
    return make_record(id="u", audio_path="/x.wav", **kw)


def test_record_phonemes_are_the_corpus_engines():
    text = "The quick brown fox."
    us = espeak.phonemize(text, espeak.Voice("en-us"))
    assert record_phonemes(_rec(text=text)) == (us, "")  # no language: en-us
    assert record_phonemes(_rec(text=text, language="en")) == (us, "")
    de = espeak.phonemize("Guten Morgen.", espeak.Voice("de"))
    assert record_phonemes(_rec(text="Guten Morgen.", language="de")) == (de, "")
    # the override wins over the record's own language
    assert record_phonemes(_rec(text="Guten Morgen.", language="en"), "de") == (de, "")
    # a record's own phonemes are kept as they are
    assert record_phonemes(_rec(text=text, phonemes="abc")) == ("abc", "")
    phonemes, why = record_phonemes(_rec(text=text, language="xx"))
    assert phonemes == "" and "no espeak voice for language 'xx'" in why
    assert record_phonemes(_rec(text="  "))[1] == "no text to phonemize"
    assert record_phonemes(_rec(text="..."))[1].startswith("espeak gave no phonemes (en-us")


def test_phoneme_vocab_for(caplog):
    texts = ["Hello there.", "General Kenobi!", "..."]
    recs = [make_record(id=f"u{i}", audio_path="/x.wav", text=t) for i, t in enumerate(texts)]
    with caplog.at_level(logging.WARNING):
        vocab = phoneme_vocab_for(recs, name="toy")
    expect = Vocab.from_texts(espeak.phonemize(t, espeak.Voice("en-us")) for t in texts[:2])
    assert vocab == expect and "1 of 3 utterances have no phonemes" in caplog.text
    assert "'espeak gave no phonemes': 1" in caplog.text
    # at most max_texts records are read, evenly spaced (first and last included)
    first = Vocab.from_texts([espeak.phonemize(texts[0], espeak.Voice("en-us"))])
    assert phoneme_vocab_for(recs, max_texts=2) == first
    with pytest.raises(DataError, match=r"toy: none of 1 utterances .*--quantizer.phoneme-vocab"):
        phoneme_vocab_for(recs[2:], name="toy")


def _layout(kind, root):
    """A small local tree of ``kind`` and the ``SourceConfig`` that opens it."""
    if kind == "ljspeech":
        make_ljspeech(root, n=4)
    elif kind == "libritts":
        make_libritts(root)
    elif kind == "common_voice":
        make_common_voice(root)
    elif kind == "folder":
        make_audio_folder(root, splits=("train",))
    else:
        (root / "data").mkdir(parents=True)
        hub_like().to_parquet(str(root / "data" / "train-0.parquet"))
    return SourceConfig(kind=kind, path=str(root), cache_dir=str(root.parent / "cache"))


@pytest.mark.parametrize("kind, voice", [("ljspeech", "en-us"), ("libritts", "en-us"),
                                         ("common_voice", "de"), ("folder", "fr"),
                                         ("hf", "en-us")])
def test_real_layouts_get_phonemes_in_their_language(kind, voice, tmp_path):
    """Text-only sources train the CTC stage: the pipeline phonemizes each transcript in
    the layout's language (Common Voice "de", the folder's locale column "fr", English
    elsewhere) into the vocabulary derived from the same transcripts."""
    source = open_source(_layout(kind, tmp_path / kind), "train")
    assert all(not r["phonemes"] and r["text"] for r in source)
    vocab = phoneme_vocab_for(source)
    cfg = PipelineConfig(sample_rate=SR, batch_size=2, max_seconds=4.0, bucket_seconds=(4.0,),
                         loudness_dbfs=None, phoneme_vocab=vocab, phonemize=True,
                         read_threads=0, process_index=0, process_count=1)
    got = collections.Counter()
    for b in iterate_eval(source, cfg):
        for row in np.flatnonzero(b["example_valid"]):
            got[vocab.decode(b["phonemes"][row][b["phonemes_valid"][row]])] += 1
    want = collections.Counter(espeak.phonemize(r["text"], espeak.Voice(voice)) for r in source)
    assert got == want and "<unk>" not in vocab.decode(range(len(vocab)))


def test_no_phonemes_is_a_counted_skip(tmp_path):
    make_ljspeech(tmp_path, n=4)
    recs = list(open_source(SourceConfig(kind="ljspeech", path=str(tmp_path), holdout=0.0)))
    vocab = phoneme_vocab_for(recs)
    cfg = PipelineConfig(sample_rate=SR, batch_size=4, max_seconds=4.0, bucket_seconds=(4.0,),
                         loudness_dbfs=None, phoneme_vocab=vocab, phonemize=True,
                         read_threads=0, process_index=0, process_count=1)
    recs[1]["text"] = "?!"  # espeak reads punctuation as nothing
    it = iterate_eval(recs, cfg)
    assert sum(int(b["example_valid"].sum()) for b in it) == 3
    assert dict(it.stats.skipped) == {"no_phonemes": 1}
    # a language espeak does not know: every utterance skipped, and the run told why
    with pytest.raises(EmptyPipelineError, match=r"every utterance of epoch 0 was skipped "
                                                  r"\(no_phonemes=4\)"):
        list(iterate_eval(recs, dataclasses.replace(cfg, language="xx")))
