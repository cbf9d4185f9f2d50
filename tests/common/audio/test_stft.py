"""STFT / iSTFT / magnitudes / frame masks against librosa and their own invariants."""

import chex
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from common.audio import (
    frame_lengths,
    frame_mask,
    istft,
    log_magnitude,
    magnitude,
    num_frames,
    stft,
    window_sumsquare,
)

# Jitted once per static configuration: on CPU this is much faster than eager
# op-by-op dispatch (test_jit_matches_eager checks the two agree).
jstft = jax.jit(stft, static_argnames=(
    "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "padding_side"))
jistft = jax.jit(istft, static_argnames=(
    "n_fft", "hop_length", "win_length", "window", "center", "length"))


def assert_librosa_close(ours, ref):
    """The "1e-4 relative" criterion: rtol 1e-4 plus atol 1e-4 x the reference's peak
    (near-zero bins have no meaningful relative error in float32)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def librosa_stft(x, **kw):
    """librosa on float64 input, moved to our channels-last layout [..., frames, freq]."""
    return np.swapaxes(librosa.stft(np.asarray(x, np.float64), **kw), -1, -2)


def batch(kind, n, make_speech, rng):
    """Three float64 signals [3, n]: white noise or speech-like with different f0 tracks."""
    if kind == "noise":
        return rng.uniform(-1.0, 1.0, (3, n))
    return np.stack([make_speech(n, seed=s) for s in range(3)])


# (n_fft, hop, win_length, window, center, pad_mode, n_samples)
STFT_CASES = {
    "hann-center-const-even": (512, 128, None, "hann", True, "constant", 4000),
    "hann-center-const-odd": (512, 128, None, "hann", True, "constant", 4001),
    "hann-center-reflect-odd": (512, 128, None, "hann", True, "reflect", 3999),
    "hamming-win400-hop160": (512, 160, 400, "hamming", True, "constant", 4000),
    "hamming-win301-reflect": (512, 128, 301, "hamming", True, "reflect", 4003),
    "hann-nocenter-even": (256, 64, None, "hann", False, "constant", 3000),
    "hann-nocenter-odd-win200": (256, 100, 200, "hann", False, "constant", 3001),
    "hann-odd-nfft": (255, 64, None, "hann", True, "constant", 2001),
}


@pytest.mark.parametrize("kind", ["noise", "speech"])
@pytest.mark.parametrize("case", list(STFT_CASES.values()), ids=list(STFT_CASES))
def test_stft_matches_librosa(case, kind, make_speech, rng):
    n_fft, hop, win, window, center, pad_mode, n = case
    x = batch(kind, n, make_speech, rng)
    ours = jstft(x.astype(np.float32), n_fft, hop, win, window, center, pad_mode)
    ref = librosa_stft(
        x, n_fft=n_fft, hop_length=hop, win_length=win, window=window, center=center,
        pad_mode=pad_mode,
    )
    chex.assert_type(ours, jnp.complex64)
    chex.assert_shape(ours, (3, num_frames(n, n_fft, hop, center), n_fft // 2 + 1))
    assert_librosa_close(ours, ref)


def test_stft_defaults_match_librosa(rng):
    x = rng.uniform(-1.0, 1.0, 5000)
    assert_librosa_close(jstft(x.astype(np.float32)), librosa_stft(x))


@pytest.mark.parametrize(
    ("n_fft", "hop", "win", "window"),
    [(512, 128, None, "hann"), (512, 256, None, "hann"), (256, 64, 200, "hamming"),
     (400, 100, None, "hann")],
    ids=["hop-n/4", "hop-n/2", "hamming-win200", "gather-path-n400"],
)
@pytest.mark.parametrize("n", [4000, 4001])
def test_istft_inverts_stft(n_fft, hop, win, window, n, rng):
    x = rng.uniform(-1.0, 1.0, (2, n)).astype(np.float32)
    spec = jstft(x, n_fft, hop, win, window, center=True)
    y = jistft(spec, n_fft, hop, win, window, center=True, length=n)
    chex.assert_shape(y, x.shape)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("length", [None, 3500, 4100], ids=["nolength", "shorter", "longer"])
@pytest.mark.parametrize(
    ("n_fft", "hop", "win", "center"),
    [(512, 128, None, True), (512, 160, 400, True), (255, 64, None, True),
     (256, 64, None, False)],
    ids=["n512-h128", "n512-h160-w400", "odd-nfft", "nocenter"],
)
def test_istft_matches_librosa(n_fft, hop, win, center, length, rng):
    x = rng.uniform(-1.0, 1.0, (2, 4000))
    spec = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, center=center)
    ref = librosa.istft(
        spec, n_fft=n_fft, hop_length=hop, win_length=win, center=center, length=length
    )
    ours = np.asarray(
        jistft(np.swapaxes(spec, -1, -2).astype(np.complex64), n_fft, hop, win, center=center,
              length=length)
    )
    assert ours.shape == ref.shape
    # Near the ends (center=False, or a `length` past the signal) the window sum-square
    # falls to ~1e-8 (hann's tails) and both sides divide rounding noise by it. Require
    # 1e-5 where wss >= 1e-3 and 1e-5 on the un-normalised (x wss) error elsewhere.
    start = n_fft // 2 if center else 0
    wss = window_sumsquare("hann", spec.shape[-1], n_fft, hop, win or n_fft)[start:]
    wss = np.pad(wss, (0, max(0, ref.shape[-1] - len(wss))))[: ref.shape[-1]]
    err = np.abs(ours - ref)
    assert err[..., wss >= 1e-3].max() <= 1e-5
    assert (err * wss).max() <= 1e-5


@pytest.mark.parametrize("length", [None, 1000, 1234], ids=["nolength", "len1000", "len1234"])
@pytest.mark.parametrize("center", [True, False], ids=["center", "nocenter"])
def test_istft_of_inconsistent_spectrogram_matches_librosa(center, length, rng):
    # A random complex matrix is no STFT of any signal, so frame trimming and the
    # overlap-add normalisation show up directly instead of cancelling out.
    n_fft, hop, win = 128, 48, 100  # hop does not divide n_fft: the scatter-add path
    spec = rng.standard_normal((2, 65, 30)) + 1j * rng.standard_normal((2, 65, 30))
    spec[..., 0, :] = spec[..., 0, :].real  # DC and Nyquist bins of a real signal are real
    spec[..., -1, :] = spec[..., -1, :].real
    ref = librosa.istft(spec, n_fft=n_fft, hop_length=hop, win_length=win, center=center,
                        length=length)
    ours = np.asarray(jistft(np.swapaxes(spec, -1, -2).astype(np.complex64), n_fft, hop, win,
                             center=center, length=length))
    assert ours.shape == ref.shape
    wss = window_sumsquare("hann", 30, n_fft, hop, win)[n_fft // 2 if center else 0:]
    wss = np.pad(wss, (0, max(0, ref.shape[-1] - len(wss))))[: ref.shape[-1]]
    err = np.abs(ours - ref)  # same conditioning split as test_istft_matches_librosa
    assert err[..., wss >= 1e-3].max() <= 1e-5
    assert (err * wss).max() <= 1e-5


@pytest.mark.parametrize(
    ("window", "n_frames", "n_fft", "hop", "win"),
    [("hann", 30, 128, 48, 100), ("hamming", 7, 255, 64, 200), ("hann", 5, 64, 100, 64)],
    ids=["hop-not-dividing", "odd-nfft", "hop-gt-nfft"],
)
def test_window_sumsquare_matches_librosa(window, n_frames, n_fft, hop, win):
    ref = librosa.filters.window_sumsquare(window=window, n_frames=n_frames, n_fft=n_fft,
                                           hop_length=hop, win_length=win, dtype=np.float64)
    ours = window_sumsquare(window, n_frames, n_fft, hop, win)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ours == 0, ref == 0)  # istft's "> tiny" test sees zeros


def test_jit_matches_eager(rng):
    x = jnp.asarray(rng.uniform(-1.0, 1.0, (2, 3000)), jnp.float32)
    f = lambda x: stft(x, 256, 100, 200, "hamming", True, "reflect")
    g = lambda s: istft(s, 256, 64, center=True, length=3000)
    np.testing.assert_allclose(jax.jit(f)(x), f(x), rtol=1e-6, atol=1e-5)
    s = stft(x, 256, 64)
    np.testing.assert_allclose(jax.jit(g)(s), g(s), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", ["magnitude", "power", "log_magnitude", "eps"])
def test_grad_finite_including_silence(fn, rng):
    feats = {
        "magnitude": lambda s: magnitude(s),
        "power": lambda s: magnitude(s, power=2.0),
        "log_magnitude": lambda s: log_magnitude(s),
        "eps": lambda s: magnitude(s, eps=1e-8),
    }[fn]
    for hop in (64, 100):  # reshape and gather framing paths
        f = lambda x, hop=hop: jnp.mean(feats(stft(x, 256, hop, pad_mode="reflect")))
        loss = jax.jit(jax.grad(f))
        for x in (np.zeros((2, 2000)), rng.uniform(-1.0, 1.0, (2, 2000))):
            g = np.asarray(loss(jnp.asarray(x, jnp.float32)))
            assert np.isfinite(g).all()
        assert np.abs(g).max() > 0  # the random input gets a real gradient


def test_magnitude_values(rng):
    spec = jnp.asarray(rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5)))
    spec = spec.at[0, 0].set(0)
    np.testing.assert_allclose(magnitude(spec), np.abs(spec), rtol=1e-6)
    np.testing.assert_allclose(magnitude(spec, power=2.0), np.abs(spec) ** 2, rtol=1e-6)
    np.testing.assert_allclose(magnitude(spec, power=0.5), np.abs(spec) ** 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        magnitude(spec, eps=1e-3), np.sqrt(np.abs(spec) ** 2 + 1e-3), rtol=1e-6
    )
    np.testing.assert_allclose(
        log_magnitude(spec, floor=1e-3), np.log(np.maximum(np.abs(spec), 1e-3)), rtol=1e-6
    )
    g = jax.grad(lambda s: magnitude(s).sum())(spec)
    assert np.isfinite(np.asarray(g)).all() and g[0, 0] == 0


@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["BN", "BCN"])
def test_batch_dims_equal_per_item(shape, rng):
    x = rng.uniform(-1.0, 1.0, (*shape, 1500)).astype(np.float32)
    spec = jstft(x, 256, 100, 200)
    flat = np.asarray(spec).reshape(-1, *spec.shape[-2:])
    for i, xi in enumerate(x.reshape(-1, 1500)):
        np.testing.assert_allclose(flat[i], jstft(xi, 256, 100, 200), rtol=1e-6, atol=1e-5)
    y = np.asarray(jistft(spec, 256, 100, 200, length=1500)).reshape(-1, 1500)
    for i, si in enumerate(flat):
        np.testing.assert_allclose(y[i], jistft(si, 256, 100, 200, length=1500), atol=1e-6)


@pytest.mark.parametrize("center", [True, False], ids=["center", "nocenter"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_frame_mask_by_centre_sample(center, side):
    n, n_fft, hop = 1000, 128, 50
    lengths = np.array([1000, 640, 201, 0])
    mask = np.asarray(frame_mask(lengths, n, n_fft=n_fft, hop_length=hop, center=center,
                                 padding_side=side))
    assert mask.shape == (4, num_frames(n, n_fft, hop, center)) and mask.dtype == bool
    for b, length in enumerate(lengths):
        lo, hi = (0, length) if side == "right" else (n - length, n)
        for t in range(mask.shape[1]):
            centre = t * hop + (0 if center else n_fft // 2)
            assert mask[b, t] == (lo <= centre < hi), (b, t)
    np.testing.assert_array_equal(
        frame_lengths(lengths, n, n_fft=n_fft, hop_length=hop, center=center,
                      padding_side=side),
        mask.sum(-1),
    )


def test_frame_mask_known_values():
    # center=True, hop 4: centres 0,4,8,...; 10 valid samples -> centres 0,4,8 valid.
    np.testing.assert_array_equal(
        frame_mask(jnp.array(10), 16, n_fft=8, hop_length=4), [1, 1, 1, 0, 0]
    )
    np.testing.assert_array_equal(
        frame_mask(jnp.array(10), 16, n_fft=8, hop_length=4, padding_side="left"),
        [0, 0, 1, 1, 0],  # valid samples 6..15 hold centres 8 and 12
    )
    with pytest.raises(ValueError, match="padding_side"):
        frame_mask(jnp.array(10), 16, n_fft=8, hop_length=4, padding_side="middle")


@pytest.mark.parametrize(
    ("center", "pad_mode"), [(False, "constant"), (True, "constant")],
    ids=["nocenter", "center-constant"],
)
def test_right_padding_leaves_valid_frames_unchanged(center, pad_mode, make_speech):
    # Zero right-padding: every frame of the unpadded signal is reproduced exactly
    # (center=False: it never reaches past the end; center=True + constant: librosa's
    # own end padding is zeros too). Valid frames are a subset of those.
    n_fft, hop, lengths = 256, 64, np.array([1800, 1111])
    sigs = [make_speech(int(n), seed=i).astype(np.float32) for i, n in enumerate(lengths)]
    padded = np.stack([np.pad(s, (0, 2000 - len(s))) for s in sigs])
    spec = np.asarray(jstft(padded, n_fft, hop, center=center, pad_mode=pad_mode,
                           lengths=lengths))
    mask = np.asarray(frame_mask(lengths, 2000, n_fft=n_fft, hop_length=hop, center=center))
    for b, s in enumerate(sigs):
        alone = np.asarray(jstft(s, n_fft, hop, center=center, pad_mode=pad_mode))
        n_valid = int(mask[b].sum())
        # center=True: valid frames are a prefix of the unpadded ones; center=False: the
        # centre rule also admits frames that run up to n_fft/2 into the padding.
        assert n_valid <= len(alone) if center else len(alone) <= n_valid
        k = min(n_valid, len(alone))
        np.testing.assert_allclose(spec[b, :k], alone[:k], rtol=1e-6, atol=1e-5)
        assert (spec[b, ~mask[b]] == 0).all()  # invalid frames zeroed by `lengths`


def test_lengths_broadcast_over_channels(rng):
    x = rng.uniform(-1.0, 1.0, (2, 3, 1000)).astype(np.float32)  # [B, C, N]
    lengths = jnp.array([[1000], [500]])  # [B, 1]: one length per item, all channels
    spec = np.asarray(jstft(x, 128, 32, lengths=lengths))
    full = np.asarray(jstft(x, 128, 32))
    np.testing.assert_array_equal(spec[0], full[0])
    np.testing.assert_array_equal(spec[1, :, :16], full[1, :, :16])  # centres 0..480
    assert (spec[1, :, 16:] == 0).all()


def test_left_padding_by_hop_multiple_shifts_frames(make_speech):
    # Left padding by a multiple of hop moves the frame grid by whole frames.
    n_fft, hop, pad = 256, 64, 5 * 64
    s = make_speech(1500).astype(np.float32)
    x = np.pad(s, (pad, 0))
    spec = np.asarray(jstft(x, n_fft, hop, center=False, lengths=jnp.array(1500),
                           padding_side="left"))
    alone = np.asarray(jstft(s, n_fft, hop, center=False))
    assert spec.shape[0] == len(alone) + 5
    np.testing.assert_allclose(spec[5:], alone, rtol=1e-6, atol=1e-5)
    # Centres t * 64 + 128 < 320 lie in the padding: frames 0-2 are invalid and zeroed.
    assert (spec[:3] == 0).all() and (np.abs(spec[3:5]) > 0).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="pad_mode"):
        stft(jnp.zeros(100), 32, 8, pad_mode="wrap")
    with pytest.raises(ValueError, match="shorter than n_fft"):
        stft(jnp.zeros(100), 128, 32, center=False)
    with pytest.raises(ValueError, match="win_length"):
        stft(jnp.zeros(1000), 128, 32, win_length=200)


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "boxcar", ("hann",)])
@pytest.mark.parametrize("length", [1, 2, 7, 400, 1024])
def test_cosine_windows_equal_scipy(window, length):
    """The windows computed without importing scipy.signal (seconds at first trace) are
    scipy's, bit for bit; other specs go to scipy itself."""
    import scipy.signal

    from common.audio.stft import get_window
    ref = scipy.signal.get_window(window, length, fftbins=True)
    np.testing.assert_array_equal(get_window(window, length, length), ref)
    np.testing.assert_array_equal(get_window(("kaiser", 4.0), length, length),
                                  scipy.signal.get_window(("kaiser", 4.0), length))
