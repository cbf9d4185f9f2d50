"""Host-side audio I/O: formats, mono mixdown, resampling, and clear errors."""

import re

import numpy as np
import pytest
import soundfile as sf

from common.audio import AudioLoadError, load_audio, resample, save_audio
from common.audio.io import read_frames

SR = 16000


def sine(freq, n, sr=SR, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


# (extension, soundfile subtype, absolute tolerance of the decoded samples)
FORMATS = {
    "wav-pcm16": ("wav", "PCM_16", 1.0 / 32768),
    "wav-float": ("wav", "FLOAT", 0.0),
    "flac": ("flac", "PCM_16", 1.0 / 32768),
    "ogg": ("ogg", "VORBIS", 0.05),  # lossy: only roughly the same samples
}


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
def test_load_formats(fmt, tmp_path):
    ext, subtype, atol = fmt
    wav = sine(440.0, SR // 2)
    path = tmp_path / f"a.{ext}"
    sf.write(path, wav, SR, subtype=subtype)
    out, sr = load_audio(path)
    assert sr == SR and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(wav)) <= (0 if ext != "ogg" else 2048)
    n = min(len(out), len(wav))
    np.testing.assert_allclose(out[:n], wav[:n], rtol=0, atol=atol + 1e-7)


def test_stereo_to_mono_is_channel_mean(tmp_path, rng):
    stereo = rng.uniform(-0.5, 0.5, (4000, 2)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, SR, subtype="FLOAT")
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, stereo.mean(axis=1), rtol=1e-6, atol=1e-7)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (4000, 2)
    np.testing.assert_array_equal(both, stereo)


def test_resample_preserves_length_and_pitch(tmp_path):
    wav = sine(440.0, 22050, sr=22050)  # 1 s
    path = tmp_path / "a22.wav"
    sf.write(path, wav, 22050, subtype="FLOAT")
    out, sr = load_audio(path, sample_rate=16000)
    assert sr == 16000 and abs(len(out) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * sr / len(out)
    assert abs(peak_hz - 440.0) <= 1.0
    np.testing.assert_allclose(np.abs(out).max(), 0.5, atol=0.01)
    same = resample(wav, 22050, 22050)
    np.testing.assert_array_equal(same, wav)
    assert same is not wav


def test_save_audio_round_trip(tmp_path):
    wav = sine(300.0, 1600) * 2.5  # clips at +-1 in PCM_16
    path = save_audio(tmp_path / "deep" / "dir" / "out.wav", wav, SR)
    assert path.is_file() and sf.info(path).subtype == "PCM_16"
    back, sr = load_audio(path)
    assert sr == SR
    np.testing.assert_allclose(back, np.clip(wav, -1, 1), atol=1.0 / 32767)
    path = save_audio(tmp_path / "f.wav", wav, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path)[0], wav)
    with pytest.raises(ValueError, match="non-finite"):
        save_audio(tmp_path / "nan.wav", np.full(10, np.nan), SR)


def test_missing_file(tmp_path):
    path = tmp_path / "nothing_here.wav"
    with pytest.raises(AudioLoadError, match=re.escape(f"{path}: no such file")):
        load_audio(path)


def test_random_bytes(tmp_path, rng):
    path = tmp_path / "garbage.wav"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioLoadError, match=re.escape(f"{path}: cannot decode audio")):
        load_audio(path)


def test_zero_frames(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioLoadError, match=re.escape(f"{path}: file has zero audio frames")):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_samples(bad, tmp_path):
    wav = sine(440.0, 1000)
    wav[500] = bad
    path = tmp_path / "broken.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match=re.escape(f"{path}: 1 non-finite")):
        load_audio(path)


def test_error_is_a_value_error():
    assert issubclass(AudioLoadError, ValueError)


@pytest.mark.parametrize("fmt", [("wav", "PCM_16"), ("wav", "FLOAT"), ("aiff", "PCM_16")])
def test_truncated_file_is_reported(fmt, tmp_path):
    ext, subtype = fmt
    path = tmp_path / f"a.{ext}"
    sf.write(path, sine(220.0, 2 * SR), SR, subtype=subtype)
    whole = read_frames(path)
    assert not whole.truncated and whole.data.shape == (2 * SR, 1)
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 3])
    cut = read_frames(path)
    assert cut.truncated and abs(cut.data.shape[0] - 2 * SR / 3) < 50
    assert abs(cut.header_frames - 2 * SR) <= 8  # the header's promise, in frames
    with pytest.raises(AudioLoadError, match=r"truncated \(the header promises 2\.00 s, "
                                             r"the file holds 0\.6\d s\)"):
        load_audio(path)
    assert read_frames(blob).data.shape == (2 * SR, 1)  # bytes work too


def test_streamed_wav_of_unknown_length_is_not_truncated(tmp_path):
    path = tmp_path / "stream.wav"
    sf.write(path, sine(220.0, SR), SR)
    blob = bytearray(path.read_bytes())
    at = blob.find(b"data")
    blob[at + 4:at + 8] = (0xFFFFFFFF).to_bytes(4, "little")  # what a live recorder leaves
    path.write_bytes(bytes(blob))
    frames = read_frames(path)
    assert not frames.truncated and frames.data.shape == (SR, 1)
