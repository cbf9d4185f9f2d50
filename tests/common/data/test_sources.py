"""Speech sources on small generated local trees: layouts, audio folders, HF datasets."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import pickle

import datasets
import grain
import numpy as np
import pytest
import soundfile as sf

from common.config import config_from_dict, config_to_dict, parse_config
from common.data import hf, layouts
from common.data.bad_input import BadInputConfig, BadInputError, decode_record
from common.data.records import FIELDS, DataError, make_record
from common.data.source_base import RecordSource
from common.data.sources import SourceConfig, hash_split, open_source

SR = 16000
STRICT = BadInputConfig(mode="strict")


def tone(seconds: float, sr: int = SR, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, seconds: float, sr: int = SR, **kw) -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, tone(seconds, sr), sr, **kw)
    return path


def encoded(seconds: float, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds), SR, format=fmt)
    return buf.getvalue()


# --------------------------------------------------------------------------- RecordSource


def _recs(n: int, tmp_path) -> list[dict]:
    return [make_record(id=f"u{i}", audio_path=str(tmp_path / f"{i}.wav"), speaker=f"s{i % 2}",
                        language="en", duration=0.5 + i) for i in range(n)]


def test_record_source_protocol(tmp_path):
    src = RecordSource(_recs(3, tmp_path), "toy")
    assert len(src) == 3 and src[np.int64(1)]["id"] == "u1"
    np.testing.assert_allclose(src.durations, [0.5, 1.5, 2.5])
    assert src.durations.dtype == np.float64 and not src.durations.flags.writeable
    assert src.speakers() == ["s0", "s1"] and src.languages() == ["en"]
    src[0]["text"] = "changed"  # a copy: the source is not modified
    assert src[0]["text"] == ""
    assert repr(src) == "RecordSource(name='toy', len=3)"
    assert [r["id"] for r in pickle.loads(pickle.dumps(src))] == ["u0", "u1", "u2"]
    assert isinstance(src, grain.sources.RandomAccessDataSource)
    assert grain.MapDataset.source(src)[2]["id"] == "u2"
    sub = src.select([2, 0], "sub")
    assert [r["id"] for r in sub] == ["u2", "u0"] and sub.load_stats is src.load_stats


def test_record_source_rejects_duplicates_and_missing_fields(tmp_path):
    recs = _recs(2, tmp_path)
    with pytest.raises(DataError, match="duplicate record id 'u0'"):
        RecordSource([recs[0], recs[0]], "dup")
    with pytest.raises(DataError, match="missing fields"):
        RecordSource([{"id": "x", "audio_path": "y"}], "bad")


def test_hash_split_is_stable_and_disjoint(tmp_path):
    recs = [make_record(id=f"u{i}", audio_path=f"/a/{i}.wav") for i in range(400)]
    src = RecordSource(recs, "h")
    parts = {s: {r["id"] for r in hash_split(src, s, 0.1)} for s in ("train", "validation",
                                                                      "test")}
    assert sum(len(p) for p in parts.values()) == 400
    assert not parts["train"] & parts["validation"] and not parts["validation"] & parts["test"]
    assert 20 <= len(parts["validation"]) <= 60 and 20 <= len(parts["test"]) <= 60
    # Independent of order and of the other records.
    again = {r["id"] for r in hash_split(RecordSource(recs[::-1][:200], "h"), "validation", 0.1)}
    assert again == {i for i in parts["validation"] if int(i[1:]) >= 200}
    assert hash_split(src, "train", 0.0) is src
    with pytest.raises(DataError, match="holdout"):
        hash_split(src, "validation", 0.0)


# --------------------------------------------------------------------------- LJSpeech


def make_ljspeech(root, n=4, missing=()):
    lines = []
    for i in range(n):
        uid = f"LJ001-{i:04d}"
        if i not in missing:
            write(root / "wavs" / f"{uid}.wav", 0.2 + 0.1 * i, 22050)
        lines.append(f'{uid}|Text "{i}" in 1886.|Text "{i}" in eighteen eighty-six.')
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_ljspeech(tmp_path):
    make_ljspeech(tmp_path)
    src = layouts.ljspeech(tmp_path)
    assert len(src) == 4 and src.name == "ljspeech"
    rec = src[1]
    assert rec["id"] == "ljs/LJ001-0001" and rec["speaker"] == "LJ" and rec["language"] == "en"
    assert rec["text"] == 'Text "1" in eighteen eighty-six.'
    assert os.path.isabs(rec["audio_path"]) and set(FIELDS) <= set(rec)
    np.testing.assert_allclose(src.durations, [0.2, 0.3, 0.4, 0.5], atol=1e-4)
    out = decode_record(rec, SR)
    assert out["audio"].dtype == np.float32 and out["audio"].shape == (round(0.3 * SR),)


def test_ljspeech_malformed_metadata_names_the_line(tmp_path):
    make_ljspeech(tmp_path, n=2)
    with open(tmp_path / "metadata.csv", "a") as f:
        f.write("LJ001-0009|a|b|c\n")
    with pytest.raises(DataError, match=r"metadata\.csv line 3"):
        layouts.ljspeech(tmp_path)
    with pytest.raises(DataError, match=r"missing LJSpeech metadata\.csv"):
        layouts.ljspeech(tmp_path / "wavs")


# --------------------------------------------------------------------------- LibriTTS


def make_libritts(root, fmt_missing_wav=False):
    for subset, spk, chap in [("train-clean-100", "19", "198"), ("train-clean-100", "26", "495"),
                              ("dev-clean", "84", "121123"), ("test-clean", "61", "70968")]:
        d = root / subset / spk / chap
        for k in range(2):
            utt = f"{spk}_{chap}_000{k}_00000{k}"
            write(d / f"{utt}.wav", 0.25, 24000)
            (d / f"{utt}.normalized.txt").write_text(f"Normalized {utt}.\n")
            (d / f"{utt}.original.txt").write_text(f"Original {utt}.")
        (d / f"{spk}_{chap}.trans.tsv").write_text("ignored\n")
    if fmt_missing_wav:
        (root / "dev-clean" / "84" / "121123" / "84_121123_0009_000009.original.txt").write_text(
            "Orphan transcript.")


def test_libritts(tmp_path):
    make_libritts(tmp_path)
    assert layouts.libritts_subsets(tmp_path) == ["dev-clean", "test-clean", "train-clean-100"]
    src = layouts.libritts(tmp_path, ["train-clean-100"])
    assert len(src) == 4 and src.speakers() == ["19", "26"]
    rec = src[0]
    assert rec["id"] == "libritts/19_198_0000_000000" and rec["subset"] == "train-clean-100"
    assert rec["text"] == "Normalized 19_198_0000_000000."
    np.testing.assert_allclose(src.durations, 0.25)
    assert len(layouts.libritts(tmp_path)) == 8
    with pytest.raises(DataError, match="no LibriTTS subset"):
        layouts.libritts(tmp_path, ["train-other-500"])


def test_libritts_transcript_without_wav_is_missing(tmp_path, caplog):
    make_libritts(tmp_path, fmt_missing_wav=True)
    with caplog.at_level(logging.WARNING):
        src = layouts.libritts(tmp_path, ["dev-clean"])
    assert len(src) == 2 and src.load_stats.skipped == {"missing": 1}
    assert "84_121123_0009_000009.wav" in caplog.text and "original.txt" in caplog.text
    with pytest.raises(BadInputError, match=r"84_121123_0009_000009\.wav: missing"):
        layouts.libritts(tmp_path, ["dev-clean"], bad=STRICT)


# --------------------------------------------------------------------------- Common Voice


CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\tage\tgender\tlocale"


def make_common_voice(root, fmt="ogg", durations=True):
    clips = {"train": ["a1", "a2", "a3"], "dev": ["b1"], "test": ["c1"]}
    for split, names in clips.items():
        rows = [CV_HEADER]
        for i, name in enumerate(names):
            fname = f"common_voice_de_{name}.{fmt}"
            kw = {"format": "MP3"} if fmt == "mp3" else {}
            write(root / "clips" / fname, 0.5, 48000 if fmt == "mp3" else 32000, **kw)
            rows.append(f"spk{i % 2}\t{fname}\tsid\tSatz \"{name}\".\t2\t0\tthirties\tmale\tde")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if durations:
        (root / "clip_durations.tsv").write_text(
            "clip\tduration[ms]\n" + "".join(f"common_voice_de_{n}.{fmt}\t500\n"
                                              for names in clips.values() for n in names))


def test_common_voice(tmp_path):
    make_common_voice(tmp_path)
    src = layouts.common_voice(tmp_path, "train")
    assert len(src) == 3 and src.speakers() == ["spk0", "spk1"] and src.languages() == ["de"]
    rec = src[0]
    assert rec["id"] == "cv/de/common_voice_de_a1" and rec["text"] == 'Satz "a1".'
    assert rec["gender"] == "male" and rec["duration"] == 0.5
    assert len(layouts.common_voice(tmp_path, "dev")) == 1
    with pytest.raises(DataError, match=r"found \['train', 'dev', 'test'\]"):
        layouts.common_voice(tmp_path, "validated")


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_common_voice_mp3_probed_and_decoded(tmp_path):
    make_common_voice(tmp_path, fmt="mp3", durations=False)
    src = layouts.common_voice(tmp_path, "dev")
    assert abs(src.durations[0] - 0.5) < 0.06  # MP3 headers give an encoder-padded length
    out = decode_record(src[0], SR)
    assert abs(out["audio"].shape[0] / SR - 0.5) < 0.06


# --------------------------------------------------------------------------- audio folders


def make_audio_folder(root, meta="csv", splits=("train", "test")):
    for split in splits:
        d = root / split
        rows = []
        for i, ext in enumerate(["wav", "flac", "ogg"]):
            write(d / "clips" / f"{split}{i}.{ext}", 0.2 + 0.1 * i)
            rows.append({"file_name": f"clips/{split}{i}.{ext}", "transcription": f"t {i}",
                         "speaker_id": f"s{i}", "locale": "fr", "gender": "f"})
        if meta == "csv":
            lines = ["file_name,transcription,speaker_id,locale,gender"]
            lines += [",".join(r.values()) for r in rows]
            (d / "metadata.csv").write_text("\n".join(lines) + "\n")
        else:
            for r, dur in zip(rows, [0.2, 0.3, 0.4], strict=True):
                r["duration"] = dur
            (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_audio_folder_csv_wav_flac_ogg(tmp_path):
    make_audio_folder(tmp_path / "af")
    cache = str(tmp_path / "cache")
    assert sorted(hf.folder_splits(tmp_path / "af", cache_dir=cache)) == ["test", "train"]
    src = hf.audio_folder(tmp_path / "af", "train", cache_dir=cache)
    assert len(src) == 3 and src.name == "af:train"
    rec = src[1]
    assert rec["id"] == "af/train/clips/train1" and rec["text"] == "t 1"
    assert rec["speaker"] == "s1" and rec["language"] == "fr" and rec["gender"] == "f"
    np.testing.assert_allclose(src.durations, [0.2, 0.3, 0.4], atol=1e-4)
    for i in range(3):
        assert decode_record(src[i], SR)["audio"].shape == (round((0.2 + 0.1 * i) * SR),)
    both = hf.audio_folder(tmp_path / "af", cache_dir=cache)
    assert len(both) == 6 and {r["split"] for r in both} == {"train", "test"}
    with pytest.raises(DataError, match=r"no split 'validation'"):
        hf.audio_folder(tmp_path / "af", "validation", cache_dir=cache)


def test_audio_folder_jsonl_durations_and_plain_folder(tmp_path):
    make_audio_folder(tmp_path / "af", meta="jsonl", splits=("train",))
    src = hf.audio_folder(tmp_path / "af", "train", cache_dir=str(tmp_path / "c"),
                          probe_durations=False)
    np.testing.assert_allclose(src.durations, [0.2, 0.3, 0.4])
    # No metadata: directory names become a class label, kept as its name.
    for spk in ("alice", "bob"):
        write(tmp_path / "plain" / spk / "x.wav", 0.3)
    plain = hf.audio_folder(tmp_path / "plain", cache_dir=str(tmp_path / "c"))
    assert sorted(r["label"] for r in plain) == ["alice", "bob"]
    assert sorted(r["id"] for r in plain) == ["plain/alice/x", "plain/bob/x"]


# --------------------------------------------------------------------------- HF datasets


def hub_like(n=4, decode=True, with_id=False) -> datasets.Dataset:
    cols = {"audio": [{"bytes": encoded(0.2 + 0.1 * i, "FLAC" if i % 2 else "WAV"),
                       "path": f"clip{i}.wav"} for i in range(n)],
            "sentence": [f"s {i}" for i in range(n)], "speaker_id": [i % 2 for i in range(n)]}
    if with_id:
        cols["id"] = [f"utt-{i}" for i in range(n)]
    # Casting a {bytes, path} struct to Audio needs no torchcodec (encoding would).
    return datasets.Dataset.from_dict(cols).cast_column("audio", datasets.Audio(decode=decode))


def test_hf_dataset_parquet_dir_with_inline_bytes(tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    hub_like().to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    src = hf.hf_dataset(str(tmp_path / "ds"), "train", cache_dir=str(tmp_path / "c"))
    assert len(src) == 4 and src.name == "ds:train"
    rec = src[3]
    assert rec["id"] == "ds/3" and rec["text"] == "s 3" and rec["speaker"] == "1"
    assert isinstance(rec["audio_bytes"], bytes) and rec["audio_path"] == "clip3.wav"
    np.testing.assert_allclose(src.durations, [0.2, 0.3, 0.4, 0.5], atol=1e-4)
    assert decode_record(rec, SR)["audio"].shape == (round(0.5 * SR),)
    back = pickle.loads(pickle.dumps(src))  # grain workers get a pickled source
    assert back[1]["audio_bytes"] == rec_bytes(src, 1)
    assert [r["id"] for r in src.select([2])] == ["ds/2"] and "audio_bytes" in src.select([2])[0]
    with pytest.raises(DataError, match=r"no split 'test'"):
        hf.hf_dataset(str(tmp_path / "ds"), "test", cache_dir=str(tmp_path / "c"))


def rec_bytes(src, i):
    return src[i]["audio_bytes"]


def test_hf_dataset_save_to_disk_and_id_column(tmp_path):
    datasets.DatasetDict({"dev": hub_like(3, decode=False, with_id=True)}).save_to_disk(
        str(tmp_path / "saved"))
    # "validation" finds the dataset's "dev".
    src = hf.hf_dataset(str(tmp_path / "saved"), "validation", probe_durations=False)
    assert [r["id"] for r in src] == ["saved/utt-0", "saved/utt-1", "saved/utt-2"]
    assert (src.durations == -1).all()
    with pytest.raises(DataError, match=r"has \['dev'\]"):
        hf.hf_dataset(str(tmp_path / "saved"), "train")


def test_hf_dataset_streaming_resumes(tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    hub_like(5).to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    src = hf.hf_dataset(str(tmp_path / "ds"), "train", streaming=True,
                        cache_dir=str(tmp_path / "c"))
    assert not src.is_random_access
    everything = [r["id"] for r in src]
    assert everything == [f"ds/{i}" for i in range(5)]
    it = src.iterator()
    first = [next(it)["id"] for _ in range(2)]
    state = json.loads(json.dumps(it.get_state()))
    fresh = hf.hf_dataset(str(tmp_path / "ds"), "train", streaming=True,
                          cache_dir=str(tmp_path / "c")).iterator()
    fresh.set_state(state)
    assert first + [r["id"] for r in fresh] == everything
    rec = next(iter(src))
    assert decode_record(rec, SR)["audio"].shape == (round(0.2 * SR),)
    assert len(list(src.shard(2, 0))) + len(list(src.shard(2, 1))) == 5


def test_hf_dataset_errors_name_the_dataset(tmp_path):
    with pytest.raises(DataError, match="no_such_dataset_dir"):
        hf.hf_dataset(str(tmp_path / "no_such_dataset_dir"), "train",
                      cache_dir=str(tmp_path / "c"))
    datasets.Dataset.from_dict({"text": ["a"]}).to_parquet(str(tmp_path / "t" / "x.parquet"))
    with pytest.raises(DataError, match="no audio column"):
        hf.hf_dataset(str(tmp_path / "t"), "train", cache_dir=str(tmp_path / "c"))


# --------------------------------------------------------------------------- SourceConfig


def test_source_config_validates():
    with pytest.raises(ValueError, match=r"SourceConfig\.kind"):
        SourceConfig(kind="wav")
    with pytest.raises(ValueError, match=r"SourceConfig\.path"):
        SourceConfig(kind="ljspeech")
    with pytest.raises(ValueError, match="streaming"):
        SourceConfig(kind="folder", path="x", streaming=True)
    with pytest.raises(ValueError, match="holdout"):
        SourceConfig(kind="ljspeech", path="x", holdout=0.7)


def test_open_source_kinds(tmp_path):
    make_ljspeech(tmp_path / "ljs", n=30)
    cfg = SourceConfig(kind="ljspeech", path=str(tmp_path / "ljs"), holdout=0.2)
    sizes = [len(open_source(cfg, s)) for s in ("train", "validation", "test")]
    assert sum(sizes) == 30 and min(sizes) > 0
    make_libritts(tmp_path / "ltts")
    ltts = SourceConfig(kind="libritts", path=str(tmp_path / "ltts"))
    assert len(open_source(ltts, "train")) == 4 and len(open_source(ltts, "validation")) == 2
    assert len(open_source(ltts, "test-clean")) == 2
    only = SourceConfig(kind="libritts", path=str(tmp_path / "ltts"), subsets=("dev-clean",))
    assert len(open_source(only, "validation")) == 2
    with pytest.raises(DataError, match="no LibriTTS subset for split 'train'"):
        open_source(only, "train")
    make_common_voice(tmp_path / "cv")
    cv = SourceConfig(kind="common_voice", path=str(tmp_path / "cv"))
    assert [r["id"] for r in open_source(cv, "validation")] == ["cv/de/common_voice_de_b1"]
    make_audio_folder(tmp_path / "af", splits=("train",))
    folder = SourceConfig(kind="folder", path=str(tmp_path / "af"), holdout=0.3,
                          cache_dir=str(tmp_path / "c"))
    held = [{r["id"] for r in open_source(folder, s)} for s in ("train", "validation", "test")]
    assert sum(map(len, held)) == 3 and not held[0] & (held[1] | held[2])
    make_audio_folder(tmp_path / "af2", splits=("train", "test"))  # has its own held-out split
    folder2 = dataclasses.replace(folder, path=str(tmp_path / "af2"))
    assert len(open_source(folder2, "train")) == 3 and len(open_source(folder2, "test")) == 3
    (tmp_path / "hub" / "data").mkdir(parents=True)
    hub_like().to_parquet(str(tmp_path / "hub" / "data" / "validation-0.parquet"))
    hub = SourceConfig(kind="hf", path=str(tmp_path / "hub"), cache_dir=str(tmp_path / "c"))
    assert len(open_source(hub, "validation")) == 4


def test_a_plain_folder_holds_out_validation(tmp_path, caplog):
    """A folder of audio files with no train/ and validation/ trains as it is: about 5%
    of it, chosen by a hash of the path inside the folder (at least one file), validates;
    the same files whatever the folder is called or where it lies."""
    for i in range(40):
        write(tmp_path / "plain" / f"spk{i % 3}" / f"f{i:02d}.wav", 0.2)
    cfg = SourceConfig(kind="folder", path=str(tmp_path / "plain"),
                       cache_dir=str(tmp_path / "c"))
    assert cfg.holdout is None
    with caplog.at_level(logging.INFO):
        train, val = open_source(cfg, "train"), open_source(cfg, "validation")
    assert "has no validation split: holding out" in caplog.text
    rel = [{os.path.relpath(r["audio_path"], cfg.path) for r in src} for src in (train, val)]
    assert 1 <= len(rel[1]) <= 8 and not rel[0] & rel[1] and len(rel[0] | rel[1]) == 40
    os.rename(tmp_path / "plain", tmp_path / "renamed")
    moved = dataclasses.replace(cfg, path=str(tmp_path / "renamed"))
    assert {os.path.relpath(r["audio_path"], moved.path)
            for r in open_source(moved, "validation")} == rel[1]
    with pytest.raises(DataError, match=r"no 'test' split .*--data.source.holdout"):
        open_source(moved, "test")
    # A small folder still gets one validation file; one file cannot be split.
    for i in range(3):
        write(tmp_path / "three" / f"{i}.wav", 0.2)
    three = dataclasses.replace(cfg, path=str(tmp_path / "three"))
    assert len(open_source(three, "validation")) == 1 and len(open_source(three, "train")) == 2
    write(tmp_path / "one" / "0.wav", 0.2)
    with pytest.raises(DataError, match="cannot be split into train and validation"):
        open_source(dataclasses.replace(cfg, path=str(tmp_path / "one")), "validation")
    # holdout=0: nothing held out (the old behaviour), no validation split
    with pytest.raises(DataError, match=r"no split 'validation'"):
        open_source(dataclasses.replace(three, holdout=0.0), "validation")
    # LJSpeech (no splits of its own) gets the same automatic slice
    make_ljspeech(tmp_path / "ljs", n=12)
    ljs = SourceConfig(kind="ljspeech", path=str(tmp_path / "ljs"))
    sizes = [len(open_source(ljs, s)) for s in ("train", "validation")]
    assert sum(sizes) == 12 and sizes[1] >= 1


def test_a_train_only_hf_dataset_holds_out_validation(tmp_path):
    """A hub-style dataset with a train split only validates on a hashed slice of it, as
    a plain folder does; one with a validation split (or "dev") reads its own."""
    (tmp_path / "hub" / "data").mkdir(parents=True)
    hub_like(12).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    cfg = SourceConfig(kind="hf", path=str(tmp_path / "hub"), cache_dir=str(tmp_path / "c"))
    train, val = open_source(cfg, "train"), open_source(cfg, "validation")
    ids = [{r["id"] for r in src} for src in (train, val)]
    assert len(ids[1]) >= 1 and not ids[0] & ids[1] and len(ids[0] | ids[1]) == 12
    assert val.name == "hub:train:validation"
    with pytest.raises(DataError, match=r"no 'test' split"):
        open_source(cfg, "test")
    with pytest.raises(DataError, match=r"no split 'validation'"):
        open_source(dataclasses.replace(cfg, holdout=0.0), "validation")
    datasets.DatasetDict({"train": hub_like(3, decode=False, with_id=True),
                          "dev": hub_like(2, decode=False, with_id=True)}).save_to_disk(
        str(tmp_path / "saved"))
    saved = dataclasses.replace(cfg, path=str(tmp_path / "saved"))
    assert len(open_source(saved, "train")) == 3 and len(open_source(saved, "validation")) == 2


def test_all_rows_bad_is_an_error(tmp_path):
    make_ljspeech(tmp_path, n=3, missing=(0, 1, 2))
    with pytest.raises(DataError, match=r"ljspeech: all 3 rows are bad input .*missing=3"):
        layouts.ljspeech(tmp_path)


def test_source_config_from_the_command_line():
    cfg = parse_config(SourceConfig, {"tiny": SourceConfig()},
                       ["--kind", "libritts", "--path", "/data/LibriTTS", "--subsets",
                        "dev-clean", "test-clean", "--bad-input.mode", "strict"])
    assert cfg.subsets == ("dev-clean", "test-clean") and cfg.bad_input.mode == "strict"
    assert config_from_dict(SourceConfig, config_to_dict(cfg)) == cfg


def test_open_source_corpus(tmp_path):
    corpus = pytest.importorskip("common.data.corpus")
    if not hasattr(corpus, "corpus_records"):
        pytest.skip("common.data.corpus has no corpus_records yet")
    d = tmp_path / "corpus" / "train"
    write(d / "a.flac", 0.3)
    (d / "metadata.jsonl").write_text(json.dumps({
        "file_name": "a.flac", "id": "0-0", "text": "hi", "phonemes": "haɪ", "speaker": "v",
        "language": "en-us", "duration": 0.3, "unseen": False}) + "\n")
    src = open_source(SourceConfig(kind="corpus", path=str(tmp_path / "corpus")), "train")
    assert len(src) == 1 and src[0]["phonemes"] == "haɪ"
