"""MR-STFT and mel losses against float64 numpy/librosa references, masking, jit, grads."""

import warnings

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from common.audio import STFTConfig
from common.losses import mel_l1_loss, multi_resolution_stft_loss, multi_scale_mel_loss
from tests.helpers import assert_close

SMALL = (STFTConfig(256, 64), STFTConfig(128, 32, 100), STFTConfig(64, 16))
SR = 16000
_STATIC = ("resolutions", "window", "center", "pad_mode", "padding_side")
mrstft = jax.jit(multi_resolution_stft_loss, static_argnames=_STATIC)
_MEL_STATIC = ("sample_rate", "n_ffts", "n_mels", "fmin", "fmax", "window", "center", "pad_mode",
               "padding_side")
msmel = jax.jit(multi_scale_mel_loss, static_argnames=_MEL_STATIC)
mel1 = jax.jit(mel_l1_loss, static_argnames=("sample_rate", "n_fft", "hop_length", "win_length",
                                             "n_mels", "fmin", "fmax", "padding_side"))
SMALL_FFTS, SMALL_MELS = (32, 128, 512), (5, 20, 80)


def signals(rng, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A target (harmonics + noise, decaying) and a prediction that is a distorted copy."""
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 300, (b, 1))
    target = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    target = 0.3 * target * np.exp(-t / 0.2) + 0.01 * rng.standard_normal((b, n))
    pred = 0.8 * target + 0.05 * np.tanh(5 * target) + 0.02 * rng.standard_normal((b, n))
    return pred, target


# ---- float64 references, written from the published definitions ---------------------------

def _mags(x: np.ndarray, length: int | None, n_fft: int, hop: int, win: int, pad_mode: str):
    """|STFT| ``[frames, freq]`` of ``x`` (``length=None``: all frames, as librosa) or of
    ``x[:length]``, keeping the frames whose centre sample is valid."""
    spec = np.abs(librosa.stft(x[:length], n_fft=n_fft, hop_length=hop, win_length=win,
                               window="hann", center=True, pad_mode=pad_mode)).T
    if length is None:
        return spec
    return spec[np.arange(spec.shape[0]) * hop < length]


def _lens(lengths, x):
    return [None] * len(x) if lengths is None else list(lengths)


def ref_mrstft(pred, target, lengths, resolutions, sc_w=1.0, mag_w=1.0, eps=1e-7,
               pad_mode="constant"):
    per_res = []
    for cfg in resolutions:
        sp = [_mags(p, n, cfg.n_fft, cfg.hop_length, cfg.win, pad_mode)
              for p, n in zip(pred, _lens(lengths, pred), strict=True)]
        st = [_mags(t, n, cfg.n_fft, cfg.hop_length, cfg.win, pad_mode)
              for t, n in zip(target, _lens(lengths, pred), strict=True)]
        sp, st = np.concatenate(sp), np.concatenate(st)  # all valid frames of the batch
        sc = np.linalg.norm(st - sp) / np.linalg.norm(st)  # Frobenius over the batch
        log_mag = np.mean(np.abs(np.log(st + eps) - np.log(sp + eps)))
        per_res.append((sc, log_mag))
    per_res = np.array(per_res)
    return np.mean(sc_w * per_res[:, 0] + mag_w * per_res[:, 1]), per_res


def _mels(x, length, n_fft, hop, n_mels, fmin, fmax, pad_mode):
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                             dtype=np.float64)
    return _mags(x, length, n_fft, hop, n_fft, pad_mode) @ fb.T  # [frames, n_mels]


def ref_multi_scale_mel(pred, target, lengths, n_ffts, n_mels, *, fmin=0.0, fmax=None,
                        eps=1e-5, pw=1.0, log_w=1.0, mag_w=0.0, pad_mode="constant"):
    total, per_scale = 0.0, []
    for n_fft, n_mel in zip(n_ffts, n_mels, strict=True):
        args = (n_fft, n_fft // 4, n_mel, fmin, fmax, pad_mode)
        lens = _lens(lengths, pred)
        mp = np.concatenate([_mels(p, n, *args) for p, n in zip(pred, lens, strict=True)])
        mt = np.concatenate([_mels(t, n, *args) for t, n in zip(target, lens, strict=True)])
        # DAC: x.clamp(eps).pow(pow).log10(), L1 mean; plus mag_weight * L1 of the mels.
        log_l1 = np.mean(np.abs(np.log10(np.maximum(mp, eps) ** pw)
                                - np.log10(np.maximum(mt, eps) ** pw)))
        mag_l1 = np.mean(np.abs(mp - mt))
        per_scale.append((log_l1, mag_l1))
        total += log_w * log_l1 + mag_w * mag_l1
    return total, np.array(per_scale)


# ---- multi-resolution STFT ----------------------------------------------------------------

@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_mrstft_matches_reference(pad_mode, rng):
    pred, target = signals(rng, 2, 1500)
    loss, metrics = mrstft(pred.astype(np.float32), target.astype(np.float32),
                           resolutions=SMALL, sc_weight=0.7, mag_weight=1.3, pad_mode=pad_mode)
    ref, per_res = ref_mrstft(pred, target, None, SMALL, 0.7, 1.3, pad_mode=pad_mode)
    assert_close(loss, ref, 1e-4)
    assert_close(metrics["sc"], per_res[:, 0].mean(), 1e-4)
    assert_close(metrics["log_mag"], per_res[:, 1].mean(), 1e-4)
    names = ["n256_h64", "n128_h32_w100", "n64_h16"]
    for name, (sc, log_mag) in zip(names, per_res, strict=True):
        assert_close(metrics[f"sc/{name}"], sc, 1e-4)
        assert_close(metrics[f"log_mag/{name}"], log_mag, 1e-4)
    assert set(metrics) == {"loss", "sc", "log_mag", *(f"{k}/{n}" for k in ("sc", "log_mag")
                                                       for n in names)}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())


def test_mrstft_padded_batch_matches_unpadded_reference(rng):
    pred, target = signals(rng, 3, 1800)
    lengths = np.array([1800, 1234, 700])
    ref, _ = ref_mrstft(pred, target, lengths, SMALL)
    junk = rng.normal(0, 5, pred.shape)  # whatever fills the padding must not matter
    valid = np.arange(1800) < lengths[:, None]
    p1, t1 = np.where(valid, pred, junk), np.where(valid, target, -junk)
    loss, _ = mrstft(p1.astype(np.float32), t1.astype(np.float32), resolutions=SMALL,
                     lengths=jnp.asarray(lengths))
    assert_close(loss, ref, 1e-4)
    # More padding, other contents: the same loss.
    p2 = np.concatenate([np.where(valid, pred, 0.0), rng.normal(size=(3, 333))], axis=1)
    t2 = np.concatenate([np.where(valid, target, 1.0), rng.normal(size=(3, 333))], axis=1)
    loss2, _ = mrstft(p2.astype(np.float32), t2.astype(np.float32), resolutions=SMALL,
                      lengths=jnp.asarray(lengths))
    assert_close(loss2, loss, 1e-5)
    # Without lengths the junk is seen: the test can fail.
    unmasked, _ = mrstft(p1.astype(np.float32), t1.astype(np.float32), resolutions=SMALL)
    assert abs(float(unmasked) - float(loss)) > 1e-2


def test_mrstft_left_padding(rng):
    pred, target = signals(rng, 2, 1600)
    lengths = np.array([1600, 1600 - 5 * 64])  # pad: a multiple of every hop
    right, _ = mrstft(pred.astype(np.float32), target.astype(np.float32), resolutions=SMALL,
                      lengths=jnp.asarray(lengths))
    shift = lambda x: np.stack([x[0], np.roll(np.where(np.arange(1600) < lengths[1], x[1],
                                                       7.0), 1600 - lengths[1])])
    left, _ = mrstft(shift(pred).astype(np.float32), shift(target).astype(np.float32),
                     resolutions=SMALL, lengths=jnp.asarray(lengths), padding_side="left")
    assert_close(left, right, 1e-5)
    assert_close(left, ref_mrstft(pred, target, lengths, SMALL)[0], 1e-4)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_mrstft_shapes_jit_bf16_and_grads(rng):
    pred, target = (jnp.asarray(a, jnp.float32) for a in signals(rng, 2, 1024))
    lengths = jnp.array([1024, 900])
    eager = multi_resolution_stft_loss(pred[..., None], target, resolutions=SMALL,
                                       lengths=lengths)[0]
    assert_close(mrstft(pred, target, resolutions=SMALL, lengths=lengths)[0], eager, 1e-5)
    pb, tb = pred.astype(jnp.bfloat16), target.astype(jnp.bfloat16)
    loss_b = mrstft(pb, tb, resolutions=SMALL, lengths=lengths)[0]
    assert loss_b.dtype == jnp.float32
    ref_b, _ = ref_mrstft(np.asarray(pb, np.float64), np.asarray(tb, np.float64), [1024, 900],
                          SMALL)
    assert_close(loss_b, ref_b, 1e-4)

    grad = jax.jit(jax.grad(lambda p, t: mrstft(p, t, resolutions=SMALL, lengths=lengths)[0]))
    g = grad(pred, target)
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    assert not np.asarray(g)[1, 900:].any()  # no gradient into the padding
    # |.| and the norm are not smooth at pred == target: finite there (0 in exact
    # arithmetic; XLA may round the two identical branches differently).
    assert np.isfinite(grad(target, target)).all()
    zeros = jnp.zeros_like(pred)  # silence: zero magnitudes, zero SC denominator
    for p, t in [(zeros, zeros), (pred, zeros), (zeros, target)]:
        loss = mrstft(p, t, resolutions=SMALL, lengths=lengths)[0]
        assert np.isfinite(loss) and np.isfinite(grad(p, t)).all()
    assert float(mrstft(zeros, zeros, resolutions=SMALL)[0]) == 0.0


def test_mrstft_rejects_bad_shapes():
    with pytest.raises(ValueError, match="pred_wav"):
        multi_resolution_stft_loss(jnp.zeros((2, 100, 2)), jnp.zeros((2, 100, 2)))
    with pytest.raises(ValueError, match="differ"):
        multi_resolution_stft_loss(jnp.zeros((2, 100)), jnp.zeros((2, 120)))


# ---- mel losses ---------------------------------------------------------------------------

def test_multi_scale_mel_dac_defaults_match_reference(rng):
    pred, target = signals(rng, 2, 2048)
    loss, metrics = msmel(pred.astype(np.float32), target.astype(np.float32), sample_rate=SR)
    with warnings.catch_warnings():  # librosa warns about the near-empty filters of 320 mels
        warnings.simplefilter("ignore")
        ref, per_scale = ref_multi_scale_mel(pred, target, None,
                                             (32, 64, 128, 256, 512, 1024, 2048),
                                             (5, 10, 20, 40, 80, 160, 320))
    assert_close(loss, ref, 1e-4)
    assert_close(metrics["log_l1"], per_scale[:, 0].sum(), 1e-4)
    assert_close(metrics["mag_l1"], per_scale[:, 1].sum(), 1e-4)
    for n_fft, (log_l1, mag_l1) in zip((32, 64, 128, 256, 512, 1024, 2048), per_scale,
                                       strict=True):
        assert_close(metrics[f"log_l1/n{n_fft}"], log_l1, 1e-4)
        assert_close(metrics[f"mag_l1/n{n_fft}"], mag_l1, 1e-4)
    assert len(metrics) == 3 + 2 * 7
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())


def test_multi_scale_mel_options_and_padding(rng):
    pred, target = signals(rng, 3, 1500)
    lengths = np.array([1500, 1111, 600])
    kw = dict(fmin=50.0, fmax=7000.0)
    ref, _ = ref_multi_scale_mel(pred, target, lengths, SMALL_FFTS, SMALL_MELS, pw=2.0,
                                 log_w=0.5, mag_w=2.0, eps=1e-4, **kw)
    valid = np.arange(1500) < lengths[:, None]
    junk = rng.normal(0, 3, pred.shape)
    loss, _ = msmel(np.where(valid, pred, junk).astype(np.float32),
                    np.where(valid, target, junk).astype(np.float32), sample_rate=SR,
                    n_ffts=SMALL_FFTS, n_mels=SMALL_MELS, pow=2.0, log_weight=0.5,
                    mag_weight=2.0, clamp_eps=1e-4, lengths=jnp.asarray(lengths), **kw)
    assert_close(loss, ref, 1e-4)
    clean, _ = msmel(np.where(valid, pred, 0.0).astype(np.float32)[..., None],
                     np.where(valid, target, 0.0).astype(np.float32)[..., None],
                     sample_rate=SR, n_ffts=SMALL_FFTS, n_mels=SMALL_MELS, pow=2.0,
                     log_weight=0.5, mag_weight=2.0, clamp_eps=1e-4,
                     lengths=jnp.asarray(lengths), **kw)
    assert_close(clean, loss, 1e-5)
    with pytest.raises(ValueError, match="same length"):
        multi_scale_mel_loss(pred, target, sample_rate=SR, n_ffts=(32, 64), n_mels=(5,))


def test_mel_l1_matches_reference(rng):
    pred, target = signals(rng, 2, 1500)
    lengths = np.array([1500, 1000])
    loss, metrics = mel1(pred.astype(np.float32), target.astype(np.float32), sample_rate=SR,
                         n_fft=256, n_mels=40, lengths=jnp.asarray(lengths))
    args = (256, 64, 40, 0.0, None, "constant")
    mp = np.concatenate([_mels(p, n, *args) for p, n in zip(pred, lengths, strict=True)])
    mt = np.concatenate([_mels(t, n, *args) for t, n in zip(target, lengths, strict=True)])
    ref = np.mean(np.abs(np.log(np.maximum(mt, 1e-5)) - np.log(np.maximum(mp, 1e-5))))
    assert_close(loss, ref, 1e-4)
    assert set(metrics) == {"loss", "mel_l1"}


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_mel_losses_jit_bf16_and_grads(rng):
    pred, target = (jnp.asarray(a, jnp.float32) for a in signals(rng, 2, 1024))
    lengths = jnp.array([1024, 777])
    kw = dict(sample_rate=SR, n_ffts=SMALL_FFTS, n_mels=SMALL_MELS, lengths=lengths,
              mag_weight=1.0)
    eager = multi_scale_mel_loss(pred, target, **kw)[0]
    assert_close(msmel(pred, target, **kw)[0], eager, 1e-5)
    loss_b = msmel(pred.astype(jnp.bfloat16), target.astype(jnp.bfloat16), **kw)[0]
    assert loss_b.dtype == jnp.float32
    assert_close(loss_b, msmel(pred.astype(jnp.bfloat16).astype(jnp.float32),
                               target.astype(jnp.bfloat16).astype(jnp.float32), **kw)[0], 1e-6)
    assert mel1(pred.astype(jnp.bfloat16), target, sample_rate=SR)[0].dtype == jnp.float32
    kw1 = dict(sample_rate=SR, n_fft=128, n_mels=20, lengths=lengths)
    assert_close(mel1(pred, target, **kw1)[0], mel_l1_loss(pred, target, **kw1)[0], 1e-5)

    grads = {
        "multi": jax.jit(jax.grad(lambda p, t: msmel(p, t, **kw)[0])),
        "single": jax.jit(jax.grad(lambda p, t: mel1(p, t, **kw1)[0])),
    }
    zeros = jnp.zeros_like(pred)
    for grad in grads.values():
        g = grad(pred, target)
        assert np.isfinite(g).all() and np.abs(g).max() > 0
        assert not np.asarray(g)[1, 777:].any()
        # At pred == target the gradient is finite (not necessarily 0: XLA may round the
        # two identical branches differently, and any sign is a valid subgradient there).
        for p, t in [(target, target), (zeros, zeros), (pred, zeros), (zeros, target)]:
            assert np.isfinite(grad(p, t)).all()
