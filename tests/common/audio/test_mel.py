"""Mel filterbank and (log-)mel spectrograms against librosa."""

import chex
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from common.audio import hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_spectrogram, mel_to_hz

# Jitted once per static configuration: on CPU much faster than eager dispatch.
_STATIC = ("sr", "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power",
           "n_mels", "fmin", "fmax", "htk", "norm", "padding_side")
jmel = jax.jit(mel_spectrogram, static_argnames=_STATIC)
jlogmel = jax.jit(log_mel_spectrogram, static_argnames=(*_STATIC, "log_floor", "to_db", "amin"))


def assert_librosa_close(ours, ref):
    """The "1e-4 relative" criterion: rtol 1e-4 plus atol 1e-4 x the reference's peak."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("sr", [16000, 22050, 24000, 44100])
@pytest.mark.parametrize("htk", [False, True], ids=["slaney-scale", "htk-scale"])
@pytest.mark.parametrize("norm", ["slaney", None], ids=["norm-slaney", "norm-none"])
@pytest.mark.parametrize(
    ("n_fft", "n_mels", "fmin", "fmax"),
    [(1024, 80, 0.0, None), (2048, 128, 30.0, 7600.0), (512, 40, 125.0, 4000.0)],
    ids=["full-band", "30-7600", "125-4000"],
)
def test_filterbank_matches_librosa(sr, htk, norm, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm,
        dtype=np.float64,
    )
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref.T, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_mel_scale_round_trip():
    f = np.array([0.0, 100.0, 999.0, 1000.0, 1001.0, 8000.0])
    for htk in (False, True):
        np.testing.assert_allclose(hz_to_mel(f, htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk), htk), f, rtol=1e-12, atol=1e-9)


def test_filterbank_is_cached_and_read_only():
    fb = mel_filterbank(16000, 512, 40)
    assert mel_filterbank(16000, 512, 40) is fb
    with pytest.raises(ValueError):
        fb[0, 0] = 1.0
    with pytest.raises(ValueError, match="norm"):
        mel_filterbank(16000, 512, 40, norm="l2")


# (sr, n_fft, hop, win_length, power, n_mels, fmin, fmax, htk, norm, center)
MEL_CASES = {
    "power2-slaney": (16000, 512, 128, None, 2.0, 64, 0.0, None, False, "slaney", True),
    "power1-slaney": (16000, 512, 128, None, 1.0, 64, 0.0, None, False, "slaney", True),
    "power2-htk-nonorm": (22050, 1024, 256, None, 2.0, 80, 0.0, None, True, None, True),
    "power1-htk-fmin-fmax": (24000, 1024, 240, 960, 1.0, 100, 40.0, 11000.0, True, "slaney",
                             True),
    "power2-fmin-fmax-nocenter": (22050, 512, 160, 400, 2.0, 80, 60.0, 7600.0, False,
                                  "slaney", False),
}


@pytest.mark.parametrize("kind", ["noise", "speech"])
@pytest.mark.parametrize("case", list(MEL_CASES.values()), ids=list(MEL_CASES))
def test_melspectrogram_matches_librosa(case, kind, make_speech, rng):
    sr, n_fft, hop, win, power, n_mels, fmin, fmax, htk, norm, center = case
    n = sr // 3
    x = rng.uniform(-1.0, 1.0, (2, n)) if kind == "noise" else np.stack(
        [make_speech(n, sr=sr, seed=s) for s in range(2)]
    )
    kw = dict(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, center=center, power=power,
              n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    ours = jmel(x.astype(np.float32), **kw)
    ref = np.swapaxes(librosa.feature.melspectrogram(y=x, **kw), -1, -2)
    chex.assert_type(ours, jnp.float32)
    assert_librosa_close(ours, ref)


@pytest.mark.parametrize("kind", ["noise", "speech"])
def test_log_mel_db_matches_power_to_db(kind, make_speech, rng):
    x = rng.uniform(-1.0, 1.0, 8000) if kind == "noise" else make_speech(8000)
    kw = dict(sr=16000, n_fft=512, hop_length=128, n_mels=64)
    ours = jlogmel(x.astype(np.float32), to_db=True, **kw)
    mel = librosa.feature.melspectrogram(y=x, **kw)
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    # dB values straddle 0, so a peak-relative atol would be meaningless: require 1e-3 dB
    # absolute (a 2.3e-4 relative error in power) plus 1e-4 relative.
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    log = jlogmel(x.astype(np.float32), **kw)
    np.testing.assert_allclose(log, np.log(np.maximum(mel.T, 1e-5)), rtol=1e-4, atol=1e-4)


def test_jit_and_batch_dims(make_speech, rng):
    x = np.stack([rng.uniform(-1.0, 1.0, (2, 4000)), np.stack([make_speech(4000)] * 2)])
    x = jnp.asarray(x, jnp.float32)  # [B=2, C=2, N]
    f = lambda x: log_mel_spectrogram(x, 16000, 512, 128, n_mels=40)
    batched = np.asarray(jax.jit(f)(x))
    chex.assert_shape(batched, (2, 2, 32, 40))
    for b in range(2):
        for c in range(2):
            np.testing.assert_allclose(batched[b, c], f(x[b, c]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("to_db", [False, True], ids=["log", "db"])
@pytest.mark.parametrize("power", [1.0, 2.0], ids=["power1", "power2"])
def test_grad_finite_including_silence(to_db, power, rng):
    f = lambda x: jnp.mean(log_mel_spectrogram(x, 16000, 256, 64, n_mels=32, power=power,
                                               to_db=to_db))
    g_mel = jax.jit(jax.grad(lambda x: jnp.mean(mel_spectrogram(x, 16000, 256, 64, n_mels=32,
                                                                power=power))))
    grad = jax.jit(jax.grad(f))
    for x in (np.zeros(2000), rng.uniform(-1.0, 1.0, 2000)):
        x = jnp.asarray(x, jnp.float32)
        assert np.isfinite(np.asarray(grad(x))).all()
        assert np.isfinite(np.asarray(g_mel(x))).all()
    assert np.abs(np.asarray(grad(x))).max() > 0


def test_lengths_give_silent_invalid_frames(make_speech):
    x = np.stack([make_speech(3000), make_speech(3000, seed=1)]).astype(np.float32)
    lengths = jnp.array([3000, 1000])
    out = np.asarray(jlogmel(x, 16000, 256, 64, n_mels=32, lengths=lengths))
    full = np.asarray(jlogmel(x, 16000, 256, 64, n_mels=32))
    n_valid = -(-1000 // 64)  # centres 0, 64, ..., < 1000
    np.testing.assert_array_equal(out[0], full[0])
    np.testing.assert_array_equal(out[1, :n_valid], full[1, :n_valid])
    np.testing.assert_allclose(out[1, n_valid:], np.log(1e-5))
