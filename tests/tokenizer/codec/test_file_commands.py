"""``infer``'s handling of a folder of broken and odd files, as a new user meets it:
every file skipped or fixed is named in the log with what was done, the reasons and
counts are those of training, evaluation and preprocessing (one bad-input policy), and
a roundtrip comes back at the input's sample rate. The codec is the toy one of
``test_tokenizer`` (no trained run needed)."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from common.audio.io import load_audio
from common.data import hf, layouts
from common.data.bad_input import BadInputError
from common.data.features import build_extractors
from common.data.pipeline import PipelineConfig, iterate_eval
from common.data.preprocessing import preprocess
from tests.tokenizer.codec.test_tokenizer import ToyCodec, ToyConfig, ToyTokenizer
from tokenizer.codec import tokenizer as tokenizer_module
from tokenizer.codec.cli import print_summary
from tokenizer.codec.file_commands import codec_command
from tokenizer.codec.tokenizer import CodecMemoryError

SR = 16000
CODEC_SR = ToyConfig().sample_rate  # 8 kHz


def tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def _truncated(path):
    sf.write(path, tone(2.0), SR)
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 3])


def _nan(path):
    x = tone(0.5)
    x[100] = np.nan
    sf.write(path, x, SR, subtype="FLOAT")


# name -> (writer, skip reason); every one of them is skipped, whoever reads it.
BROKEN = {
    "unreadable": (lambda p: p.write_bytes(b"not audio at all " * 10), "unreadable"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "nan": (_nan, "nonfinite"),
    "silent": (lambda p: sf.write(p, np.zeros(SR, np.float32), SR), "silent"),
    "blip": (lambda p: sf.write(p, tone(0.005), SR), "too_short"),  # 5 ms
    "dangling": (lambda p: p.symlink_to(p.parent / "moved_away.wav"), "missing"),
    "truncated": (_truncated, "truncated"),
}
# name -> (writer, its rate); used after a fix, and named with what was done.
ODD = {
    "good": (lambda p: sf.write(p, tone(1.0), SR), SR),
    "six_channels": (lambda p: sf.write(p, tone(1.0, channels=6), SR), SR),
    "cd_rate": (lambda p: sf.write(p, tone(1.0, 44100), 44100), 44100),
}


@pytest.fixture
def messy(tmp_path):
    """A folder of every broken and odd case, a text file that is not audio, and the
    expected skip counts."""
    root = tmp_path / "in"
    root.mkdir()
    for name, (write, _) in {**BROKEN, **ODD}.items():
        write(root / f"{name}.wav")
    (root / "README.txt").write_text("not audio")
    counts = {}
    for _, reason in BROKEN.values():
        counts[reason] = counts.get(reason, 0) + 1
    return root, counts


def _tok():
    return ToyTokenizer(ToyCodec(ToyConfig()), ToyConfig(), batch_size=2)


def test_roundtrip_names_every_skipped_and_fixed_file(messy, tmp_path, caplog, capsys):
    root, counts = messy
    with caplog.at_level(logging.INFO):
        res = codec_command("roundtrip", root, tmp_path / "out", _tok())
    assert sorted(p.name for p in res["written"]) == sorted(f"{n}.wav" for n in ODD)
    assert res["skip_counts"] == counts and len(res["skipped"]) == len(BROKEN)
    for name, (_, reason) in BROKEN.items():
        line = next(m for m in res["skipped"] if f"{name}.wav" in m)
        assert f"{name}.wav: {reason}" in line  # the file and the reason, in the result
        assert f"skipping {root / name}.wav: {reason}" in caplog.text  # and in the log
    log = caplog.text
    assert "dangling.wav: missing (broken symbolic link to " in log
    assert "truncated.wav: truncated (the header promises 2.00 s, the file holds 0.6" in log
    assert "six_channels.wav: downmixed (6 channels mixed to mono)" in log
    assert "cd_rate.wav: resampled (44100 Hz -> 8000 Hz)" in log
    assert "at its input's sample rate" in log
    # 16 kHz -> 8 kHz for the codec is a fix too; good.wav is only resampled
    assert res["notes"] == {"downmixed": 1, "resampled": 3}
    # Each output at its input's rate and length (the codec ran at 8 kHz).
    for name, (_, rate) in ODD.items():
        wav, sr = load_audio(tmp_path / "out" / f"{name}.wav")
        assert sr == rate and abs(wav.size - rate) <= rate // CODEC_SR
    print_summary("roundtrip", tmp_path / "out", res, "toy")
    out = capsys.readouterr().out
    assert "wrote 3 files" in out and "skipped 7 empty=1 missing=1 nonfinite=1" in out
    assert "fixed 4 downmixed=1 resampled=3" in out and "blip.wav: too_short" in out


def test_output_rate_flag_and_keeping_truncated_files(messy, tmp_path, caplog):
    root, _ = messy
    with caplog.at_level(logging.WARNING):
        res = codec_command("roundtrip", root, tmp_path / "out", _tok(), output_rate=22050,
                            keep_truncated=True)
    assert "truncated" not in res["skip_counts"] and res["notes"]["truncated"] == 1
    assert "truncated.wav: truncated (the header promises 2.00 s" in caplog.text  # a warning
    assert "kept what is there" in caplog.text
    assert len(res["written"]) == len(ODD) + 1
    for path in res["written"]:
        assert sf.info(path).samplerate == 22050
    wav, _ = load_audio(tmp_path / "out" / "truncated.wav")
    assert abs(wav.size - 22050 * 2 / 3) < 50  # what was left of it
    # Tokens decode at the codec's rate, or at the one asked for.
    codec_command("encode", root / "good.wav", tmp_path / "tok", _tok())
    res = codec_command("decode", tmp_path / "tok", tmp_path / "dec", _tok())
    assert sf.info(res["written"][0]).samplerate == CODEC_SR
    with pytest.raises(ValueError, match="--output-rate"):
        codec_command("decode", tmp_path / "tok", tmp_path / "dec", _tok(), output_rate=0)


def test_a_single_bad_file_or_strict_stops_naming_it(messy, tmp_path):
    root, _ = messy
    for name, (_, reason) in BROKEN.items():
        if name == "dangling":
            continue
        with pytest.raises(BadInputError, match=rf"{name}\.wav: {reason}"):
            codec_command("encode", root / f"{name}.wav", tmp_path / "t", _tok())
    with pytest.raises(FileNotFoundError, match=r"dangling\.wav: broken symbolic link to"):
        codec_command("encode", root / "dangling.wav", tmp_path / "t", _tok())
    with pytest.raises(BadInputError, match=r"blip\.wav: too_short|dangling\.wav: missing"):
        codec_command("encode", root, tmp_path / "t", _tok(), strict=True)


def test_a_file_too_long_for_memory_is_skipped_naming_it(tmp_path, monkeypatch, caplog):
    """In a folder, a file whose model call would not fit in the free memory is skipped
    as "too_long" with what it needs, and the others are written; alone or under
    ``strict`` it stops the command with the same message."""
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "short.wav", tone(0.2, CODEC_SR), CODEC_SR)
    sf.write(root / "long.wav", tone(5.0, CODEC_SR), CODEC_SR)
    tok = _tok()
    small, _ = tok.memory_needed(tok._encode, np.zeros((2, 1600, 1), np.float32))
    monkeypatch.setattr(tokenizer_module, "available_memory_bytes",
                        lambda: int((small + 60_000) / tokenizer_module.MEMORY_MARGIN))
    with caplog.at_level(logging.WARNING):
        res = codec_command("roundtrip", root, tmp_path / "out", tok)
    assert [p.name for p in res["written"]] == ["short.wav"]
    assert res["skip_counts"] == {"too_long": 1}
    assert "long.wav: too_long (one toy call of shape" in res["skipped"][0]
    assert f"skipping {root / 'long.wav'}: too_long" in caplog.text
    for src, kw in ((root / "long.wav", {}), (root, {"strict": True})):
        with pytest.raises(CodecMemoryError, match=r"long\.wav: one toy call"):
            codec_command("encode", src, tmp_path / "t", tok, **kw)


def test_infer_preprocess_and_pipelines_count_alike(messy, tmp_path):
    """One policy: the same folder, as an LJSpeech tree, gives the same skip counts to
    infer, to preprocess (console and index) and to the training/eval pipeline, whether
    a file is caught when the source loads or when it is decoded."""
    root, counts = messy
    lj = tmp_path / "LJSpeech"
    lj.mkdir()
    os.rename(root, lj / "wavs")
    names = sorted(p.stem for p in (lj / "wavs").glob("*.wav"))
    (lj / "metadata.csv").write_text("".join(f"{n}|Text {n}.|Text {n}.\n" for n in names))

    res = codec_command("encode", lj / "wavs", tmp_path / "tok", _tok())
    assert res["skip_counts"] == counts

    source = layouts.ljspeech(lj)
    result = preprocess(source, tmp_path / "shards", build_extractors(["text"]),
                        sample_rate=CODEC_SR, shard_size=4)
    assert result.index["skipped"] == counts and result.skipped == counts
    assert result.index["skipped_total"] == len(BROKEN) == sum(counts.values())
    assert result.index["skipped_at_load"] == {"missing": 1, "unreadable": 1, "empty": 1}
    summary = result.summary()
    assert f"{len(ODD)} records, {len(BROKEN)} skipped (empty=1 missing=1 " in summary
    assert "in all" not in summary  # one worker, one run: the index says the same

    pcfg = PipelineConfig(sample_rate=CODEC_SR, batch_size=4, frame_hops=(4,),
                          read_threads=0, process_index=0, process_count=1)
    it = iterate_eval(source, pcfg)
    batches = list(it)
    assert sum(int(b["example_valid"].sum()) for b in batches) == len(ODD)
    assert dict(it.stats.skipped) == counts
    # The same files as a plain audio folder (read through datasets, which lists no
    # dangling links: the loader reports it).
    folder = hf.audio_folder(lj / "wavs", "train", cache_dir=str(tmp_path / "cache"))
    it = iterate_eval(folder, pcfg)
    assert sum(int(b["example_valid"].sum()) for b in it) == len(ODD)
    assert dict(it.stats.skipped) == counts
