"""The embedded espeak-ng corpus: layout, determinism, splits, hold-outs, HF loading, CLI.

Builds are tiny (about a minute of audio at 16 kHz) and work with whatever sentence
files ship: only ``en.txt`` is guaranteed, so the hold-out language is an English voice.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from common.data import corpus as corpus_mod
from common.data import corpus_worker, speakers
from common.data.corpus import (
    SPLITS,
    CorpusConfig,
    build_corpus,
    corpus_records,
    default_corpus,
    make_plan,
    plan_utterances,
)
from common.data.corpus_worker import ShardError, trim_silence
from common.data.espeak import Voice
from common.data.records import FIELDS, DataError
from common.data.vocab import UNK, Vocab

ROW_KEYS = ["file_name", "id", "text", "phonemes", "speaker", "language", "duration", "unseen"]
TINY = CorpusConfig(hours=1 / 60, sample_rate=16_000, languages=("en-us", "en-gb-x-rp", "de"),
                    language_weights=(6.0, 1.0, 2.0), num_speakers=8, seed=3,
                    valid_fraction=0.2, test_fraction=0.2, holdout_speakers=1,
                    holdout_languages=("en-gb-x-rp",), shard_size=4)


def rows_of(root, split):
    path = root / split / "metadata.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tree_digest(root):
    """Relative path -> sha256 of every file except corpus.json (it holds wall times)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny corpus built with 1 worker, and with 6 that start too many shards."""
    base = tmp_path_factory.mktemp("corpus")
    out = {1: base / "w1", 6: base / "w6"}
    build_corpus(dataclasses.replace(TINY, out=out[1], workers=1))
    started = []
    run, run_shards = corpus_worker._ShardRunner.run, corpus_mod.run_shards
    with pytest.MonkeyPatch.context() as mp:
        # A tiny size estimate makes the first round start all six workers, more shards
        # than the target needs: the extra ones must be stopped and their files dropped.
        mp.setattr(corpus_mod, "run_shards",
                   lambda *a, **k: run_shards(*a, **{**k, "estimate": 1e-3}))
        mp.setattr(corpus_worker._ShardRunner, "run",
                   lambda self, spec: started.append(spec["shard"]) or run(self, spec))
        summary = build_corpus(dataclasses.replace(TINY, out=out[6], workers=6))
    assert len(started) > summary["shards"]
    assert sorted(p.name for p in base.iterdir()) == ["w1", "w6"]  # no build dirs left
    return out


def test_layout_schema_and_audio_files(built):
    root = built[1]
    summary = json.loads((root / "corpus.json").read_text())
    assert summary["format_version"] == corpus_mod.FORMAT_VERSION
    assert summary["config"]["sample_rate"] == 16_000 and summary["speed"] > 0
    ids = []
    for split in SPLITS:
        rows = rows_of(root, split)
        assert len(rows) == summary["splits"][split]["utterances"] > 0, split
        for row in rows:
            assert list(row) == ROW_KEYS
            assert re.fullmatch(r"\d{5}-\d{4}", row["id"])
            assert row["file_name"] == f"{row['id'][:5]}/{row['id']}.flac"
            assert row["text"] and row["phonemes"] and isinstance(row["unseen"], bool)
            assert row["speaker"].startswith(row["language"])
            info = sf.info(root / split / row["file_name"])
            assert (info.samplerate, info.channels, info.format, info.subtype) == (
                16_000, 1, "FLAC", "PCM_16")
            assert info.frames / 16_000 == pytest.approx(row["duration"], abs=1e-9)
            assert 0.3 < row["duration"] < 20
            ids.append(row["id"])
    assert len(ids) == len(set(ids)) == summary["utterances"]
    spk = json.loads((root / "speakers.json").read_text())
    assert len(spk) == TINY.num_speakers
    assert {r["speaker"] for s in SPLITS for r in rows_of(root, s)} <= set(spk)
    v = next(iter(spk.values()))
    assert set(v) == {"language", "variant", "rate", "pitch", "range", "unseen", "utterances"}


def test_audio_is_speech_at_the_requested_rate(built):
    row = rows_of(built[1], "train")[0]
    wav, sr = sf.read(built[1] / "train" / row["file_name"], dtype="float32")
    assert sr == 16_000 and wav.ndim == 1
    assert np.sqrt(np.mean(wav**2)) > 0.01 and np.abs(wav).max() <= 1.0
    # Trimmed: at most the kept silence (plus a little resampler ringing) at either end.
    loud = np.flatnonzero(np.abs(wav) > 1e-2)
    assert loud[0] / sr < 0.2 and (len(wav) - loud[-1]) / sr < 0.2


def test_identical_whatever_the_worker_count(built):
    one, six = tree_digest(built[1]), tree_digest(built[6])
    assert one == six
    assert sum(k.endswith(".flac") for k in one) == json.loads(
        (built[1] / "corpus.json").read_text())["utterances"]


def test_stops_at_the_first_shard_that_reaches_the_target(built):
    rows = [r for s in SPLITS for r in rows_of(built[1], s)]
    by_shard = {}
    for r in rows:
        by_shard.setdefault(int(r["id"][:5]), []).append(r["duration"])
    last = max(by_shard)
    assert sorted(by_shard) == list(range(last + 1))
    total = sum(sum(d) for d in by_shard.values())
    assert total >= TINY.hours * 3600 > total - sum(by_shard[last])


def test_splits_are_disjoint_and_near_the_fractions():
    cfg = CorpusConfig(languages=("en-us", "en-gb-x-rp"), num_speakers=4,
                       valid_fraction=0.1, test_fraction=0.2)
    utts = plan_utterances(cfg, make_plan(cfg), 0, 3000)
    assert len({u["id"] for u in utts}) == 3000
    frac = {s: sum(u["split"] == s for u in utts) / 3000 for s in SPLITS}
    assert frac["validation"] == pytest.approx(0.1, abs=0.02)
    assert frac["test"] == pytest.approx(0.2, abs=0.02)
    # The plan is a function of the seed: a slice equals the same part of the whole.
    assert plan_utterances(cfg, make_plan(cfg), 1000, 1010) == utts[1000:1010]


def test_held_out_speakers_and_languages_are_only_in_test(built):
    root = built[1]
    spk = json.loads((root / "speakers.json").read_text())
    unseen = {k for k, v in spk.items() if v["unseen"]}
    assert {k for k, v in spk.items() if v["language"] == "en-gb-x-rp"} <= unseen
    assert sum(v["language"] != "en-gb-x-rp" for k, v in spk.items() if k in unseen) == 1
    for split in SPLITS:
        for row in rows_of(root, split):
            assert row["unseen"] == (row["speaker"] in unseen)
            if split != "test":
                assert not row["unseen"] and row["language"] != "en-gb-x-rp"
    test_rows = rows_of(root, "test")
    assert any(r["unseen"] for r in test_rows)


def _encode_without_torchcodec(self, value):
    """``datasets.Audio.encode_example`` for local files, minus its torchcodec import."""
    if isinstance(value, dict):
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    return {"bytes": None, "path": os.fspath(value)}


def test_hf_audiofolder_loads_all_splits(built, tmp_path, monkeypatch):
    import datasets

    # datasets 5 encodes audio paths through torchcodec even with decode=False, and we do
    # not install it (FIELD-NOTES); the folder itself is loaded as it is.
    monkeypatch.setattr(datasets.Audio, "encode_example", _encode_without_torchcodec)
    root = built[1]
    ds = datasets.load_dataset("audiofolder", data_dir=str(root), cache_dir=str(tmp_path))
    assert set(ds) == set(SPLITS)
    for split in SPLITS:
        d = ds[split].cast_column("audio", datasets.Audio(decode=False))
        assert set(ROW_KEYS[1:]) | {"audio"} <= set(d.column_names)
        rows = rows_of(root, split)
        assert len(d) == len(rows)
        first = d[0]
        match = next(r for r in rows if r["id"] == first["id"])
        assert first["phonemes"] == match["phonemes"] and first["unseen"] == match["unseen"]
        wav, sr = sf.read(first["audio"]["path"])
        assert sr == 16_000 and len(wav) / sr == pytest.approx(first["duration"], abs=1e-9)


def test_vocabularies_cover_every_phoneme_and_character(built):
    rows = [r for s in SPLITS for r in rows_of(built[1], s)]
    phones = Vocab.load(built[1] / "phoneme_vocab.json")
    chars = Vocab.load(built[1] / "text_vocab.json")
    for r in rows:
        ids = phones.encode(r["phonemes"])
        assert UNK not in ids and phones.decode(ids) == r["phonemes"]
        assert UNK not in chars.encode(r["text"])


def test_corpus_records(built):
    for split in SPLITS:
        recs = corpus_records(built[1], split)
        rows = rows_of(built[1], split)
        assert [r["id"] for r in recs] == [r["id"] for r in rows]
        for rec, row in zip(recs, rows, strict=True):
            assert set(FIELDS) | {"unseen"} <= set(rec)
            assert os.path.isabs(rec["audio_path"]) and os.path.isfile(rec["audio_path"])
            assert rec["phonemes"] == row["phonemes"] and rec["duration"] == row["duration"]
    with pytest.raises(ValueError, match="split must be one of"):
        corpus_records(built[1], "dev")


def test_speaker_plan_is_deterministic_and_human(tmp_path):
    langs, weights = ("en-us", "de", "fr"), (3.0, 1.0, 1.0)
    a = speakers.plan_speakers(langs, weights, 20, seed=5, holdout_speakers=2,
                               holdout_languages=("fr",))
    assert a == speakers.plan_speakers(langs, weights, 20, seed=5, holdout_speakers=2,
                                       holdout_languages=("fr",))
    assert a != speakers.plan_speakers(langs, weights, 20, seed=6)
    assert len({s.id for s in a}) == 20 and [s.voice.language for s in a[:3]] == list(langs)
    for s in a:
        v = s.voice
        assert v.variant in speakers.CURATED_VARIANTS
        assert 130 <= v.rate <= 220 and 25 <= v.pitch <= 75 and 20 <= v.range <= 80
        assert s.unseen or v.language != "fr"
    assert sum(s.unseen and s.voice.language != "fr" for s in a) == 2
    assert not {"whisper", "croak", "Demonic"} & set(speakers.human_variants())
    with pytest.raises(speakers.SpeakerError, match="rejects language voice 'en-gb'"):
        speakers.plan_speakers(("en-gb",), (1.0,), 2, seed=0)
    with pytest.raises(speakers.SpeakerError, match="leaves no seen speaker"):
        speakers.plan_speakers(("en-us", "de"), (1.0, 1.0), 3, seed=0, holdout_speakers=2,
                               holdout_languages=("de",))


def test_automatic_shard_size():
    assert CorpusConfig(hours=0.01).shard_utterances() == 16
    assert CorpusConfig(hours=0.25).shard_utterances() == 30
    assert CorpusConfig(hours=10).shard_utterances() == 128
    assert CorpusConfig(hours=10, shard_size=7).shard_utterances() == 7


def test_config_errors_name_the_field():
    for kwargs, field in [({"hours": 0}, "hours"), ({"sample_rate": -1}, "sample_rate"),
                          ({"language_weights": (1.0,)}, "language_weights"),
                          ({"holdout_languages": ("xx",)}, "holdout_languages"),
                          ({"valid_fraction": 0.6, "test_fraction": 0.5}, "test_fraction"),
                          ({"num_speakers": 2, "holdout_speakers": 2}, "holdout_speakers")]:
        with pytest.raises(ValueError, match=rf"CorpusConfig\.{field}"):
            CorpusConfig(**kwargs)
    with pytest.raises(corpus_mod.CorpusError, match="no sentence file"):
        make_plan(CorpusConfig(languages=("xx-nowhere",)))


def test_trim_and_resample_helpers():
    sr = 22_050
    wav = np.zeros(3 * sr, np.float32)
    wav[sr: 2 * sr] = 0.5 * np.sin(np.arange(sr) * 0.1)
    out = trim_silence(wav, sr, keep=0.1)
    assert abs(len(out) - 1.2 * sr) < 5
    assert trim_silence(np.zeros(100, np.float32), sr).size == 0
    # The worker's copy must equal common.audio.io.resample. Load io.py on its own: the
    # package's __init__ imports the jax DSP modules (the reason for the copy).
    spec = importlib.util.spec_from_file_location(
        "_audio_io", pathlib.Path(corpus_worker.__file__).parents[1] / "audio" / "io.py")
    audio_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audio_io)
    for target in (16_000, 24_000, 48_000, sr):
        np.testing.assert_array_equal(corpus_worker.resample(wav, sr, target),
                                      audio_io.resample(wav, sr, target))


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    real = corpus_mod.shard_spec

    def broken(*args):
        spec = real(*args)
        spec["utterances"][0]["voice"]["language"] = "xx-nowhere"
        return spec

    monkeypatch.setattr(corpus_mod, "shard_spec", broken)
    cfg = CorpusConfig(out=tmp_path / "c", hours=0.01, languages=("en-us",), num_speakers=2,
                       workers=1, shard_size=2)
    with pytest.raises(ShardError, match=r"shard 0 failed(.|\n)*no voice 'xx-nowhere"):
        build_corpus(cfg)
    assert list(tmp_path.iterdir()) == []


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "common.data.build_corpus", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # three runs of `python -m common.data.build_corpus`
def test_cli(tmp_path):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--hours", "0.002", "--sample-rate", "24000",
            "--languages", "en-us", "--num-speakers", "2", "--workers", "1", "--seed", "1",
            "--shard-size", "3"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert re.search(r"h, \d+ utterances .* 2 speakers, 1 languages \(en-us\).* audio s per "
                     r"wall s", res.stdout)
    assert json.loads((out / "corpus.json").read_text())["config"]["sample_rate"] == 24_000
    res = run_cli(*args)  # the output exists now
    assert res.returncode == 1 and "already exists" in res.stderr
    res = run_cli("--hours", "0.002")
    assert res.returncode == 2 and "--out" in res.stderr


def test_default_corpus_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRC_CACHE_DIR", str(tmp_path))
    kw = dict(sample_rate=16_000, hours=0.002, languages=("en-us",), num_speakers=2,
              shard_size=3, workers=1)
    path = default_corpus(**kw)
    assert path.parent == tmp_path / "corpus" and (path / "corpus.json").is_file()
    assert corpus_records(path, "train")

    def no_build(*a, **k):
        raise AssertionError("rebuilt a cached corpus")

    monkeypatch.setattr(corpus_mod, "build_corpus", no_build)
    start = time.perf_counter()
    assert default_corpus(**{**kw, "workers": 2}) == path  # workers do not change content
    assert time.perf_counter() - start < 1.0
    assert corpus_mod.corpus_key(CorpusConfig(**{**kw, "seed": 1})) != path.name
    assert not list((tmp_path / "corpus").glob(".*building*"))


def test_voice_ids_name_every_setting():
    assert Voice("de", "m3", 150, 40, 60).id == "de+m3:r150:p40:g60"


_DEFAULT_CORPUS = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from common.data.corpus import default_corpus
print(default_corpus(sample_rate=16000, hours=0.002, languages=("en-us",), num_speakers=2,
                     shard_size=3, workers=1))
"""


@pytest.mark.slow  # two fresh interpreters importing the corpus builder
def test_two_processes_build_the_default_corpus_once(tmp_path):
    env = {**os.environ, "TRC_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", _DEFAULT_CORPUS], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().startswith(str(tmp_path))
    assert sum("building the embedded espeak corpus" in err for _, err in outs) == 1


def test_corpus_records_name_a_bad_row(tmp_path):
    (tmp_path / "corpus.json").write_text("{}")
    assert corpus_records(tmp_path, "validation") == []  # an empty split has no folder
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metadata.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match=r"metadata.jsonl:1: bad metadata row"):
        corpus_records(tmp_path, "train")
    with pytest.raises(DataError, match="not an espeak corpus"):
        corpus_records(tmp_path / "nowhere", "train")
