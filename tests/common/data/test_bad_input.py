"""Broken inputs: each is skipped with a count and a log line naming it, or a clear error.

Covers ``decode_record`` directly and the sources (load-time checks) in both modes.
"""

from __future__ import annotations

import io
import logging
import os
import pickle

import datasets
import grain
import numpy as np
import pytest
import soundfile as sf

from common.audio.io import AudioLoadError
from common.data import hf, layouts
from common.data.bad_input import (
    BadInputConfig,
    BadInputError,
    Skipped,
    SkipStats,
    decode_record,
)
from common.data.records import make_record

SR = 16000
SKIP, STRICT = BadInputConfig(mode="skip"), BadInputConfig(mode="strict")


def tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def _float_with(value: float):
    def write(p):
        x = tone(0.3)
        x[100] = value
        sf.write(p, x, SR, subtype="FLOAT")
    return write


def _truncated(p):
    """A 1 s WAV cut to a third: the header still promises 1 s."""
    sf.write(p, tone(1.0), SR)
    blob = p.read_bytes()
    p.write_bytes(blob[:len(blob) // 3])


# name -> (writer, reason): each makes a file that must be skipped for ``reason``.
BAD = {
    "unreadable": (lambda p: p.write_bytes(b"definitely not a RIFF file " * 10), "unreadable"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "zero_length": (lambda p: sf.write(p, np.zeros(0, np.float32), SR), "empty"),
    "nan": (_float_with(np.nan), "nonfinite"),
    "inf": (_float_with(np.inf), "nonfinite"),
    "silent": (lambda p: sf.write(p, np.zeros(SR // 2, np.float32), SR), "silent"),
    "too_short": (lambda p: sf.write(p, tone(0.02), SR), "too_short"),
    "truncated": (_truncated, "truncated"),
}
# Caught only when decoding: their headers are fine.
DECODE_ONLY = {"nan", "inf", "silent", "too_short", "truncated"}
# name -> (writer, note): usable after a fix, counted as a note.
FIXED = {
    "stereo": (lambda p: sf.write(p, tone(0.3, channels=2), SR), "downmixed"),
    "rate8000": (lambda p: sf.write(p, tone(0.3, 8000), 8000), "resampled"),
    "rate11025": (lambda p: sf.write(p, tone(0.3, 11025), 11025), "resampled"),
}


def rec_for(path) -> dict:
    return make_record(id=os.path.basename(str(path)), audio_path=str(path))


# --------------------------------------------------------------------------- decode_record


@pytest.mark.parametrize("case", sorted(BAD))
def test_decode_skip_counts_and_names_the_file(case, tmp_path, caplog):
    path = tmp_path / f"{case}.wav"
    BAD[case][0](path)
    stats = SkipStats()
    with caplog.at_level(logging.WARNING, logger="common.data.bad_input"):
        out = decode_record(rec_for(path), SR, SKIP, stats)
    assert isinstance(out, Skipped) and out.reason == BAD[case][1] and out.path == str(path)
    assert stats.skipped == {BAD[case][1]: 1} and stats.total_skipped == 1
    assert str(path) in caplog.text and BAD[case][1] in caplog.text


@pytest.mark.parametrize("case", sorted(BAD))
def test_decode_strict_raises_naming_the_file(case, tmp_path):
    path = tmp_path / f"{case}.wav"
    BAD[case][0](path)
    with pytest.raises(BadInputError, match=rf"{case}\.wav: {BAD[case][1]}") as err:
        decode_record(rec_for(path), SR, STRICT)
    assert err.value.path == str(path) and err.value.reason == BAD[case][1]


@pytest.mark.parametrize("case", sorted(FIXED))
def test_decode_fixes_multichannel_and_unusual_rates(case, tmp_path):
    path = tmp_path / f"{case}.wav"
    FIXED[case][0](path)
    stats = SkipStats()
    out = decode_record(rec_for(path), SR, STRICT, stats)  # fixed inputs are fine even strict
    assert out["audio"].dtype == np.float32 and out["audio"].ndim == 1
    rate = sf.info(path).samplerate
    assert out["sample_rate"] == SR
    assert out["audio"].shape == (round(round(0.3 * rate) * SR / rate),)
    assert stats.notes == {FIXED[case][1]: 1} and stats.total_skipped == 0
    if case == "stereo":  # downmix is the channel mean
        np.testing.assert_allclose(out["audio"], 0.75 * tone(0.3), atol=1e-4)
    assert "fixed" not in stats.summary() and FIXED[case][1] in stats.summary()


def test_decode_missing_file(tmp_path, caplog):
    path = tmp_path / "gone.wav"
    stats = SkipStats()
    with caplog.at_level(logging.WARNING):
        assert decode_record(rec_for(path), SR, SKIP, stats).reason == "missing"
    assert stats.skipped == {"missing": 1} and "gone.wav" in caplog.text
    with pytest.raises(BadInputError, match=r"gone\.wav: missing"):
        decode_record(rec_for(path), SR, STRICT)


def test_decode_dangling_symlink_names_its_target(tmp_path, caplog):
    path = tmp_path / "link.wav"
    path.symlink_to(tmp_path / "moved_away.wav")
    stats = SkipStats()
    with caplog.at_level(logging.WARNING):
        out = decode_record(rec_for(path), SR, SKIP, stats)
    assert out.reason == "missing" and stats.skipped == {"missing": 1}
    assert "link.wav: missing (broken symbolic link to " in caplog.text
    assert "moved_away.wav" in caplog.text
    with pytest.raises(BadInputError, match=r"link\.wav: missing \(broken symbolic link"):
        decode_record(rec_for(path), SR, STRICT)


def test_truncated_file_skipped_or_kept_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cut.wav"
    _truncated(path)
    stats = SkipStats()
    with caplog.at_level(logging.WARNING):
        out = decode_record(rec_for(path), SR, SKIP, stats)
    assert out.reason == "truncated" and "the header promises 1.00 s, the file holds 0.33 s" \
        in out.detail
    caplog.clear()
    keep = BadInputConfig(mode="strict", truncated="keep")  # kept even strict: a fix
    with caplog.at_level(logging.WARNING):
        out = decode_record(rec_for(path), SR, keep, stats)
    assert out["audio"].shape == ((path.stat().st_size - 44) // 2,)  # PCM_16 after the header
    assert stats.notes == {"truncated": 1} and stats.skipped == {"truncated": 1}
    assert "cut.wav: truncated (the header promises 1.00 s" in caplog.text
    assert "kept what is there" in caplog.text
    with pytest.raises(ValueError, match=r"BadInputConfig\.truncated"):
        BadInputConfig(truncated="pad")


def test_fixes_are_logged_at_the_note_level_for_kept_files_only(tmp_path, caplog):
    six = tmp_path / "six.wav"
    sf.write(six, np.stack([tone(0.3, 44100)] * 6, axis=1), 44100)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros((SR, 2), np.float32), 44100)
    stats = SkipStats(note_level=logging.INFO)
    with caplog.at_level(logging.INFO, logger="common.data.bad_input"):
        out = decode_record(rec_for(six), SR, SKIP, stats)
        assert decode_record(rec_for(quiet), SR, SKIP, stats).reason == "silent"
    assert (out["source_sample_rate"], out["source_channels"]) == (44100, 6)
    assert stats.notes == {"downmixed": 1, "resampled": 1}  # the silent one is only skipped
    assert "six.wav: downmixed (6 channels mixed to mono)" in caplog.text
    assert "six.wav: resampled (44100 Hz -> 16000 Hz)" in caplog.text
    assert "quiet.wav: downmixed" not in caplog.text and "quiet.wav: silent" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="common.data.bad_input"):
        decode_record(rec_for(six), SR, SKIP, SkipStats())  # pipelines: DEBUG
    assert "six.wav" not in caplog.text
    assert issubclass(BadInputError, AudioLoadError)  # what the audio readers raise


def test_decode_audio_bytes_records(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(0.3, 22050), 22050, format="FLAC")
    good = make_record(id="hub/0", audio_path="hub/0.flac", audio_bytes=buf.getvalue())
    stats = SkipStats()
    out = decode_record(good, SR, SKIP, stats)
    assert out["audio"].shape == (round(0.3 * SR),) and stats.notes == {"resampled": 1}
    for blob, reason in [(b"garbage" * 20, "unreadable"), (b"", "empty")]:
        rec = make_record(id="hub/1", audio_path="hub/1.wav", audio_bytes=blob)
        assert decode_record(rec, SR, SKIP, stats).reason == reason
        with pytest.raises(BadInputError, match=rf"hub/1\.wav: {reason}"):
            decode_record(rec, SR, STRICT)
    assert stats.skipped == {"unreadable": 1, "empty": 1}


def test_skip_stats_pickle_and_threshold_config():
    stats = SkipStats()
    stats.skip(Skipped("a.wav", "silent"))
    back = pickle.loads(pickle.dumps(stats))
    back.skip(Skipped("b.wav", "silent"))
    assert back.skipped == {"silent": 2} and stats.skipped == {"silent": 1}
    assert "skipped 1 silent=1" == stats.summary()
    with pytest.raises(ValueError, match=r"BadInputConfig\.mode"):
        BadInputConfig(mode="lenient")


# --------------------------------------------------------------------------- sources


def make_bad_ljspeech(root) -> dict[str, int]:
    """LJSpeech tree: one good clip, every bad and fixed case, one missing. Returns
    the metadata line of each case."""
    (root / "wavs").mkdir(parents=True)
    names = ["good", *sorted(BAD), *sorted(FIXED), "missing"]
    for name in names:
        path = root / "wavs" / f"{name}.wav"
        if name == "good":
            sf.write(path, tone(0.3), SR)
        elif name in BAD:
            BAD[name][0](path)
        elif name in FIXED:
            FIXED[name][0](path)
    (root / "metadata.csv").write_text("".join(f"{n}|Text {n}.|Text {n}.\n" for n in names))
    return {n: i + 1 for i, n in enumerate(names)}


def test_source_skip_mode_counts_and_names_file_and_row(tmp_path, caplog):
    lines = make_bad_ljspeech(tmp_path)
    with caplog.at_level(logging.WARNING):
        src = layouts.ljspeech(tmp_path)
    # Load time: what the header (or its absence) shows.
    assert src.load_stats.skipped == {"missing": 1, "unreadable": 1, "empty": 2}
    for name in ("missing", "unreadable", "empty", "zero_length"):
        assert f"{name}.wav" in caplog.text
        assert f"metadata.csv line {lines[name]}" in caplog.text
    kept = {r["id"].split("/")[1] for r in src}
    assert kept == {"good", *DECODE_ONLY, *FIXED}
    # Decode time, as pipeline workers do: the epoch goes on, every bad file counted.
    stats = SkipStats()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds = grain.MapDataset.source(src).map(lambda r: decode_record(r, SR, SKIP, stats))
        out = [x for x in ds.to_iter_dataset() if not isinstance(x, Skipped)]
    assert sorted(r["id"] for r in out) == sorted(f"ljs/{n}" for n in ("good", *FIXED))
    assert stats.skipped == {"nonfinite": 2, "silent": 1, "too_short": 1, "truncated": 1}
    assert stats.notes == {"downmixed": 1, "resampled": 2}
    for name in DECODE_ONLY:
        assert f"{name}.wav" in caplog.text


def test_source_strict_mode_names_file_and_row(tmp_path):
    lines = make_bad_ljspeech(tmp_path)
    # Missing files are looked for first (cheap), with or without probing headers.
    for probe in (True, False):
        line = lines["missing"]
        with pytest.raises(BadInputError, match=rf"missing\.wav: missing \(.*csv line {line}\)"):
            layouts.ljspeech(tmp_path, bad=STRICT, probe_durations=probe)
    src = layouts.ljspeech(tmp_path, probe_durations=False)
    assert src.load_stats.skipped == {"missing": 1} and (src.durations == -1).all()
    sf.write(tmp_path / "wavs" / "missing.wav", tone(0.3), SR)
    with pytest.raises(BadInputError, match=rf"empty\.wav: empty \(.*line {lines['empty']}: 0 b"):
        layouts.ljspeech(tmp_path, bad=STRICT)
    # Unprobed, the rest is caught when decoding.
    for rec in layouts.ljspeech(tmp_path, probe_durations=False):
        name = rec["id"].split("/")[1]
        if name in BAD:
            with pytest.raises(BadInputError, match=rf"{name}\.wav: {BAD[name][1]}"):
                decode_record(rec, SR, STRICT)
        else:
            assert abs(decode_record(rec, SR, STRICT)["audio"].shape[0] - 0.3 * SR) <= 1


def test_audio_folder_metadata_pointing_at_missing_file(tmp_path, caplog):
    root = tmp_path / "af"
    root.mkdir()
    sf.write(root / "a.wav", tone(0.3), SR)
    (root / "metadata.csv").write_text("file_name,text\na.wav,here\nb.wav,not here\n")
    with caplog.at_level(logging.WARNING):
        src = hf.audio_folder(root, cache_dir=str(tmp_path / "c"))
    assert [r["text"] for r in src] == ["here"] and src.load_stats.skipped == {"missing": 1}
    assert "b.wav" in caplog.text and "row 1" in caplog.text
    with pytest.raises(BadInputError, match=r"b\.wav: missing .*row 1"):
        hf.audio_folder(root, bad=STRICT, cache_dir=str(tmp_path / "c"))


def test_audio_folder_dangling_link_is_missing_in_its_split(tmp_path, caplog):
    root = tmp_path / "af"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        sf.write(root / split / "a.wav", tone(0.3), SR)
    (root / "test" / "gone.wav").symlink_to(tmp_path / "moved_away.wav")
    with caplog.at_level(logging.WARNING):
        test = hf.audio_folder(root, "test", cache_dir=str(tmp_path / "c"))
    assert len(test) == 1 and test.load_stats.skipped == {"missing": 1}
    assert "gone.wav: missing (broken symbolic link to " in caplog.text
    train = hf.audio_folder(root, "train", cache_dir=str(tmp_path / "c"))
    assert len(train) == 1 and train.load_stats.skipped == {}  # not in this split
    assert hf.audio_folder(root, cache_dir=str(tmp_path / "c")).load_stats.skipped == {
        "missing": 1}
    with pytest.raises(BadInputError, match=r"gone\.wav: missing \(broken symbolic link"):
        hf.audio_folder(root, "test", bad=STRICT, cache_dir=str(tmp_path / "c"))


def test_hf_dataset_inline_garbage_bytes(tmp_path, caplog):
    buf = io.BytesIO()
    sf.write(buf, tone(0.3), SR, format="WAV")
    ds = datasets.Dataset.from_dict({
        "audio": [{"bytes": buf.getvalue(), "path": "ok.wav"},
                  {"bytes": b"\x00garbage" * 9, "path": "broken.wav"}],
        "text": ["ok", "broken"]}).cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(tmp_path / "saved"))
    with caplog.at_level(logging.WARNING):
        src = hf.hf_dataset(str(tmp_path / "saved"), "train")
    assert [r["text"] for r in src] == ["ok"] and src.load_stats.skipped == {"unreadable": 1}
    assert "broken.wav" in caplog.text and "row 1" in caplog.text
    with pytest.raises(BadInputError, match=r"broken\.wav: unreadable .*row 1"):
        hf.hf_dataset(str(tmp_path / "saved"), "train", bad=STRICT)
    # Unprobed, the bytes reach decode_record, which names the entry.
    src = hf.hf_dataset(str(tmp_path / "saved"), "train", probe_durations=False)
    stats = SkipStats()
    assert [decode_record(r, SR, SKIP, stats) is not None for r in src] == [True, True]
    assert stats.skipped == {"unreadable": 1}
