"""Feature extractors and the resumable, parallel preprocessing into ArrayRecord shards."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import grain
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import soundfile as sf

from common.audio.mel import log_mel_spectrogram
from common.data import shards
from common.data.bad_input import BadInputConfig, BadInputError, decode_record
from common.data.extractors import F0, LogMel, yin
from common.data.features import ExtractorError, build_extractors, register_extractor
from common.data.preprocess import main
from common.data.preprocessing import finalize, preprocess, worker_slot
from common.data.records import make_record
from common.data.shards import ShardError, ShardSource
from common.data.vocab import Vocab

REPO = Path(__file__).resolve().parents[3]
SR = 22050


# ------------------------------------------------------------------ a plug-in extractor

_HOOK = {"fail_after": None}  # the interruption test sets this; None = never fail


class Interrupted(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Energy:
    """Mean square of the audio at its own rate (tests resampling per extractor)."""

    name: ClassVar[str] = "energy"
    sample_rate: int = 16000
    scale: float = 1.0

    def spec(self):
        return {"energy": ((), "float32"), "energy_samples": ((), "int")}

    def __call__(self, rec):
        left = _HOOK["fail_after"]
        if left is not None:
            if left == 0:
                raise Interrupted("stopped by the test")
            _HOOK["fail_after"] = left - 1
        crash = os.environ.get("TRC_TEST_CRASH_AFTER")
        if crash is not None:  # a hard kill mid-shard, in the CLI test's subprocess
            count = int(os.environ.get("TRC_TEST_SEEN", "0"))
            if count == int(crash):
                os._exit(17)
            os.environ["TRC_TEST_SEEN"] = str(count + 1)
        assert rec["sample_rate"] == self.sample_rate
        wav = rec["audio"]
        return {"energy": np.float32(self.scale * np.mean(wav * wav)).reshape(()),
                "energy_samples": int(wav.shape[0])}


def energy(sample_rate: int = 16000, scale: float = 1.0) -> Energy:
    return Energy(sample_rate, scale)


# ------------------------------------------------------------------------- fixtures


def _sine(path, seconds, sr=16000, freq=220.0, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


@pytest.fixture
def corpus(tmp_path):
    """7 good 220 Hz sines at 16 kHz, one unreadable and one silent file, as records."""
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    records = []
    for i in range(9):
        path = wavs / f"u{i}.wav"
        if i == 2:
            path.write_bytes(b"this is not audio" * 10)
        elif i == 5:
            sf.write(path, np.zeros(8000, np.float32), 16000)
        else:
            _sine(path, 0.4 + 0.05 * i)
        records.append(make_record(id=f"u{i}", audio_path=str(path), text=f"hello {i}",
                                   phonemes="həlˈoʊ", speaker=f"s{i % 2}", language="en"))
    good = [r["id"] for r in records if r["id"] not in ("u2", "u5")]
    return records, good


# ----------------------------------------------------------------------- extractors


def _speechy(seconds=1.2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(130 + 50 * np.sin(2 * np.pi * 0.8 * t)) / SR
    wav = 0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.01 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


def _jax_logmel(wav, **kw):
    return np.asarray(log_mel_spectrogram(
        jnp.asarray(wav), SR, n_fft=1024, hop_length=256, win_length=kw.get("win_length"),
        n_mels=kw.get("n_mels", 80), fmax=kw.get("fmax"), power=kw.get("power", 2.0),
        to_db=kw.get("to_db", False)))


@pytest.mark.parametrize("kw", [{}, {"win_length": 800, "n_mels": 64, "fmax": 8000.0},
                                {"to_db": True, "power": 1.0}])
def test_logmel_matches_our_jax_mel(kw):
    wav = _speechy()
    got = LogMel(**kw)({"id": "x", "audio": wav, "sample_rate": SR})["logmel"]
    assert got.dtype == np.float32 and got.shape == (1 + wav.size // 256, kw.get("n_mels", 80))
    np.testing.assert_allclose(got, _jax_logmel(wav, **kw), atol=1e-4, rtol=0)


@pytest.mark.slow  # librosa.stft compiles with numba in every fresh process (~5-17 s)
def test_logmel_matches_librosa():
    wav = _speechy(seed=2)
    got = LogMel(win_length=800)({"id": "x", "audio": wav, "sample_rate": SR})["logmel"]
    mel = librosa.feature.melspectrogram(y=wav, sr=SR, n_fft=1024, hop_length=256,
                                         win_length=800, n_mels=80, pad_mode="constant")
    np.testing.assert_allclose(got, np.log(np.maximum(mel, 1e-5)).T, atol=1e-4, rtol=0)


@pytest.mark.slow  # librosa.yin compiles with numba in every fresh process (~20 s)
def test_yin_matches_librosa():
    wav = _speechy(seed=1)
    f0, cmnd, rms = yin(wav, SR, 50.0, 800.0, 1024, 256)
    ref = librosa.yin(wav, fmin=50.0, fmax=800.0, sr=SR, frame_length=1024, hop_length=256)
    np.testing.assert_allclose(f0, ref, atol=1e-3)
    assert cmnd.shape == rms.shape == f0.shape and cmnd.min() >= 0


@pytest.mark.parametrize("method", ["yin", pytest.param("pyin", marks=pytest.mark.slow)])  # numba
def test_f0_of_a_sine_with_a_pause(method):
    t = np.arange(int(0.5 * SR)) / SR
    tone = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    wav = np.concatenate([tone, np.zeros(int(0.3 * SR)), tone]).astype(np.float32)
    out = F0(method=method)({"id": "x", "audio": wav, "sample_rate": SR})
    assert out["f0"].dtype == np.float32 and out["voiced"].dtype == bool
    assert out["f0"].shape == out["voiced"].shape == (1 + wav.size // 256,)
    voiced = out["voiced"]
    # Frames are 256 samples apart, 1024 long: the pause (0.5 .. 0.8 s) is frames 43 .. 69.
    assert voiced[3:40].all() and voiced[73:108].all()
    assert not voiced[47:66].any()
    # pyin snaps to a 10-cent grid (220.6 Hz here) and may be off at a tone's onset.
    np.testing.assert_allclose(out["f0"][np.r_[3:40, 73:108]], 220.0, atol=1.0)
    assert (out["f0"][~voiced] == 0).all()


def test_build_extractors_arguments_and_errors(tmp_path):
    setups = build_extractors(["logmel", "f0", "tests.common.data.test_preprocessing:energy"],
                              ["logmel.n_mels=40", "f0.method=pyin", "energy.scale=2.5",
                               "logmel.fmax=none"], defaults={"sample_rate": 24000})
    lm, f0, en = (s.extractor for s in setups)
    assert (lm.n_mels, lm.fmax, lm.sample_rate) == (40, None, 24000)
    assert f0.method == "pyin" and isinstance(en, Energy) and en.scale == 2.5
    assert en.sample_rate == 24000  # the run's rate reaches plug-ins too
    assert setups[0].describe()["features"] == {"logmel": {"shape": [None, 40],
                                                           "dtype": "float32"}}
    assert setups[0].describe()["info"]["hop_length"] == 256
    with pytest.raises(ExtractorError, match=r"'logmel' has no argument 'bins'.*n_mels"):
        build_extractors(["logmel"], ["bins=3"])
    with pytest.raises(ExtractorError, match="say which extractor"):
        build_extractors(["logmel", "f0"], ["n_mels=3"])
    with pytest.raises(ExtractorError, match="n_mels='many'"):
        build_extractors(["logmel"], ["n_mels=many"])
    with pytest.raises(ExtractorError, match="unknown extractor 'mfcc'"):
        build_extractors(["mfcc"])
    with pytest.raises(ExtractorError, match="cannot import"):
        build_extractors(["no_such_pkg.mod:factory"])
    with pytest.raises(ExtractorError, match=r"method=.crepe.: allowed values"):
        build_extractors(["f0"], ["method=crepe"])
    register_extractor("test_clash", lambda: Energy())
    with pytest.raises(ExtractorError, match="'energy' is written by both"):
        build_extractors(["tests.common.data.test_preprocessing:energy", "test_clash"])
    with pytest.raises(ValueError, match="not a vocabulary"):
        build_extractors(["text"], [f"vocab={tmp_path / 'missing.json'}"])


# ---------------------------------------------------------------------- preprocessing


def _setups(tmp_path):
    Vocab.from_texts([f"hello {i}" for i in range(9)]).save(tmp_path / "text_vocab.json")
    Vocab.from_texts(["həlˈoʊ"]).save(tmp_path / "ph_vocab.json")
    return build_extractors(
        ["logmel", "f0", "text", "audio", "tests.common.data.test_preprocessing:energy"],
        [f"text.vocab={tmp_path / 'text_vocab.json'}",
         f"text.phoneme_vocab={tmp_path / 'ph_vocab.json'}", "audio.dtype=int16",
         "energy.sample_rate=16000"], defaults={"sample_rate": SR})


def test_write_and_read_features(tmp_path, corpus):
    records, good = corpus
    out = tmp_path / "shards"
    result = preprocess(records, out, _setups(tmp_path), sample_rate=SR, shard_size=3)
    assert result.records == 7 and result.skipped == {"unreadable": 1, "silent": 1}
    index = result.index
    assert index == shards.read_json(out / "index.json")
    assert index["count"] == 7 and index["num_shards"] == 3
    assert [s["count"] for s in index["shards"]] == [2, 2, 3]
    assert index["skipped"] == {"silent": 1, "unreadable": 1} and index["skipped_total"] == 2
    # 16 kHz files: the good ones (the silent one, resampled too, counts as skipped only)
    assert index["notes"] == {"resampled": 7}
    assert index["features"]["logmel"] == {"shape": [None, 80], "dtype": "float32"}
    assert index["features"]["f0"]["shape"] == [None]
    assert [e["name"] for e in index["extractors"]] == ["logmel", "f0", "text", "audio",
                                                        "energy"]
    assert abs(index["seconds"] - sum(0.4 + 0.05 * int(i[1:]) for i in good)) < 1e-3
    side = shards.read_json(out / "shard-00000-of-00003.json")
    assert side["skipped_files"][0]["path"].endswith("u2.wav")

    src = ShardSource(out)
    assert [src[i]["id"] for i in range(len(src))] == good
    tv, pv = Vocab.load(tmp_path / "text_vocab.json"), Vocab.load(tmp_path / "ph_vocab.json")
    for i, rid in enumerate(good):
        ex = src[i]
        rec = records[int(rid[1:])]
        dec = decode_record(rec, SR)
        assert ex["duration"] == dec["audio"].size / SR and ex["sample_rate"] == SR
        assert ex["speaker"] == rec["speaker"] and ex["audio_path"] == rec["audio_path"]
        np.testing.assert_array_equal(ex["logmel"], LogMel()(dec)["logmel"])
        if i == 0:  # one independent check is enough (each new length recompiles)
            np.testing.assert_allclose(ex["logmel"], _jax_logmel(dec["audio"]), atol=1e-4)
        assert ex["f0"].shape == (ex["logmel"].shape[0],)
        assert ex["voiced"][3:-3].all()
        np.testing.assert_allclose(ex["f0"][ex["voiced"]], 220.0, atol=3.0)
        assert ex["text"] == rec["text"] and tv.decode(ex["text_ids"]) == rec["text"]
        assert pv.decode(ex["phoneme_ids"]) == rec["phonemes"]
        assert ex["audio"].dtype == np.int16 and ex["audio"].size == dec["audio"].size
        np.testing.assert_allclose(ex["audio"] / 32767, dec["audio"], atol=1 / 32767)
        assert abs(ex["energy_samples"] - dec["audio"].size * 16000 / SR) <= 1
        assert abs(float(ex["energy"]) - 0.125) < 0.01  # mean square of a 0.5 sine
    assert not list(out.glob("*.tmp"))


def test_two_workers_give_one_index(tmp_path, corpus):
    records, good = corpus
    out = tmp_path / "shards"
    setups = build_extractors(["logmel", "text"], defaults={"sample_rate": SR})
    first = preprocess(records, out, setups, sample_rate=SR, shard_size=2, worker_id=0,
                       num_workers=2)
    assert first.shards_written == (0, 2, 4) and first.index is None
    assert not (out / "index.json").exists()
    with pytest.raises(ShardError, match="2 of 5 shards unfinished"):
        finalize(out, require=True)
    second = preprocess(records, out, setups, sample_rate=SR, shard_size=2, worker_id=1,
                        num_workers=2, threads=2)
    assert second.shards_written == (1, 3) and second.index is not None
    assert second.index["count"] == 7 and len(second.index["shards"]) == 5
    assert [ShardSource(out)[i]["id"] for i in range(7)] == good


def test_resume_after_interruption(tmp_path, corpus):
    records, good = corpus
    out = tmp_path / "shards"
    setups = build_extractors(["text", "tests.common.data.test_preprocessing:energy"],
                              defaults={"sample_rate": SR})
    _HOOK["fail_after"] = 3  # u0, u1, u3 pass; dies on u4 in shard 2 (u2 and u5 are bad)
    try:
        with pytest.raises(Interrupted):
            preprocess(records, out, setups, sample_rate=SR, shard_size=2)
    finally:
        _HOOK["fail_after"] = None
    assert sorted(p.name for p in out.glob("shard-*.json")) == [
        "shard-00000-of-00005.json", "shard-00001-of-00005.json"]
    assert not list(out.glob("*.tmp"))  # the writer removed its partial file
    # What a hard kill would leave: a partial tmp, and a data file renamed without sidecar.
    (out / "shard-00003-of-00005.array_record.tmp").write_bytes(b"partial")
    (out / "shard-00002-of-00005.array_record").write_bytes(b"renamed, no sidecar")
    result = preprocess(records, out, setups, sample_rate=SR, shard_size=2)
    assert result.shards_done_before == (0, 1) and result.shards_written == (2, 3, 4)
    src = ShardSource(out)
    assert [src[i]["id"] for i in range(len(src))] == good  # each id exactly once
    assert result.index["count"] == 7 and not list(out.glob("*.tmp"))
    # This run wrote part of the shards: its line gives the index's totals too.
    assert result.records == 4 and result.skipped == {"silent": 1}
    assert "index.json written: 7 records, 2 skipped (silent=1 unreadable=1) in all" \
        in result.summary()
    # A plan from before BadInputConfig.truncated existed resumes (the default applies).
    plan = shards.read_json(out / shards.PLAN_FILE)
    del plan["bad_input"]["truncated"]
    shards.write_json(out / shards.PLAN_FILE, plan)
    again = preprocess(records, out, setups, sample_rate=SR, shard_size=2)
    assert again.shards_written == () and again.index["count"] == 7
    with pytest.raises(ShardError, match=r"differs .* in \['num_records', 'ids_sha256', "
                                         r"'shard_size', 'num_shards'\]"):
        preprocess(records[:8], out, setups, sample_rate=SR, shard_size=3)
    with pytest.raises(ShardError, match=r"in \['extractors'\]"):
        preprocess(records, out, setups[:1], sample_rate=SR, shard_size=2)


def test_strict_mode_stops_at_the_bad_file(tmp_path, corpus):
    records, _ = corpus
    out = tmp_path / "shards"
    setups = build_extractors(["text"])
    with pytest.raises(BadInputError, match=r"u2\.wav: unreadable"):
        preprocess(records, out, setups, sample_rate=SR, shard_size=2,
                   bad_input=BadInputConfig(mode="strict"))
    assert [p.name for p in out.glob("shard-*.json")] == ["shard-00000-of-00005.json"]
    assert not list(out.glob("*.tmp"))


def test_grain_reads_the_shards(tmp_path, corpus):
    records, good = corpus
    out = tmp_path / "shards"
    preprocess(records, out, build_extractors(["logmel"], ["n_mels=16"]), sample_rate=SR,
               shard_size=4)
    ds = (grain.MapDataset.source(ShardSource(out)).shuffle(seed=0)
          .map(lambda e: (e["id"], e["logmel"].shape)))
    items = list(ds.to_iter_dataset())
    assert sorted(i for i, _ in items) == sorted(good)
    assert all(shape[1] == 16 for _, shape in items)


def test_worker_slot():
    assert worker_slot(None, None) == (0, 1)  # jax.distributed is not initialised in tests
    assert worker_slot(2, 3) == (2, 3)
    with pytest.raises(ValueError, match="both"):
        worker_slot(1, None)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        worker_slot(2, 2)


# ------------------------------------------------------------------------------- CLI


@pytest.mark.slow  # an interpreter start-up that imports jax, scipy and datasets
def test_cli_end_to_end_with_a_crash(tmp_path, capsys):
    root = tmp_path / "LJSpeech"
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i in range(5):
        uid = f"LJ001-{i:04d}"
        if i == 1:
            (root / "wavs" / f"{uid}.wav").write_bytes(b"garbage" * 20)
        elif i == 3:
            sf.write(root / "wavs" / f"{uid}.wav", np.zeros(11025, np.float32), 22050)
        else:
            _sine(root / "wavs" / f"{uid}.wav", 0.5, sr=22050)
        rows.append(f"{uid}|Text {i}.|Text {i}.")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "common.data.preprocess", "--output", str(out),
           # all of the layout: no validation slice held out of its "train"
           "--source.kind", "ljspeech", "--source.path", str(root), "--source.holdout", "0",
           "--extractors", "logmel", "f0", "text",
           "tests.common.data.test_preprocessing:energy", "--extractor-arg",
           "logmel.n_mels=40", "--extractor-arg", "energy.scale=2", "--shard-size", "2",
           "--sample-rate", "22050", "--no-progress"]
    env = {**os.environ, "TRC_TEST_CRASH_AFTER": "1", "PYTHONPATH": str(REPO)}
    crashed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert crashed.returncode == 17, crashed.stderr
    assert [p.name for p in out.glob("*.tmp")] == ["shard-00000-of-00002.array_record.tmp"]
    # The rerun, in-process (the same entry point, without another interpreter start-up).
    result = main(cmd[3:])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert result.shards_done_before == () and result.shards_written == (0, 1)
    # The console counts what the index counts: the header the loader could not read too.
    assert "3 records, 2 skipped (silent=1 unreadable=1)" in last and "in all" not in last
    assert "audio-s/s" in last and "index.json" in last
    src = ShardSource(out)
    assert [src[i]["id"] for i in range(len(src))] == ["ljs/LJ001-0000", "ljs/LJ001-0002",
                                                       "ljs/LJ001-0004"]
    assert src[0]["logmel"].shape == (1 + 11025 // 256, 40) and src[1]["text"] == "Text 2."
    index = src.index
    assert index["skipped"] == {"silent": 1, "unreadable": 1} and index["skipped_total"] == 2
    assert index["skipped_at_load"] == index["source"]["load_skipped"] == {"unreadable": 1}
    assert main(["--output", str(out), "--finalize"])["count"] == 3
