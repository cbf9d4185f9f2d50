"""SSIM / MS-SSIM against a float64 numpy/scipy reference, and their properties.

The reference is written independently of the module: SSIM as skimage's
``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` computes it
(Wang et al. 2004: ``scipy.ndimage.gaussian_filter`` with reflect padding, then the border
of half a window cropped, one 2-D image per channel), MS-SSIM as ``pytorch_msssim.ms_ssim``
(torch's ``avg_pool2d(2, padding=side % 2)`` written out literally). Checked once by hand
against scikit-image 0.26 and pytorch_msssim 1.0.0 in float64: equal to 1e-14 (given
pytorch_msssim a float64 window: its own is float32, which moves its SSIM by up to ~6e-6).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from common.losses.ssim import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_loss, ssim, ssim_loss, ssim_map
from tests.helpers import assert_close


def ref_ssim_cs(a, b, *, data_range=1.0, window_size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Mean ``(ssim, cs)`` of two 2-D float64 images, skimage's algorithm."""
    r = (window_size - 1) // 2
    filt = lambda z: ndimage.gaussian_filter(z, sigma, radius=r, mode="reflect")[r:-r, r:-r]
    ux, uy = filt(a), filt(b)
    vx, vy, vxy = filt(a * a) - ux * ux, filt(b * b) - uy * uy, filt(a * b) - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    s = (2 * ux * uy + c1) / (ux**2 + uy**2 + c1) * cs
    return s.mean(), cs.mean()


def ref_ssim(x, y, **kw):
    """``[B]``: mean over channels of the per-channel SSIM of ``[B, H, W, C]`` images."""
    return np.array([np.mean([ref_ssim_cs(xb[..., c], yb[..., c], **kw)[0]
                              for c in range(x.shape[-1])]) for xb, yb in zip(x, y, strict=True)])


def ref_avg_pool(img):
    """``F.avg_pool2d(img, 2, padding=(H % 2, W % 2))`` of one ``[H, W]`` image."""
    ph, pw = img.shape[0] % 2, img.shape[1] % 2
    p = np.pad(img, ((ph, ph), (pw, pw)))  # zeros, counted in the mean
    oh, ow = (p.shape[0] - 2) // 2 + 1, (p.shape[1] - 2) // 2 + 1
    return p[: 2 * oh, : 2 * ow].reshape(oh, 2, ow, 2).mean(axis=(1, 3))


def ref_ms_ssim(x, y, weights=MS_SSIM_WEIGHTS, **kw):
    """``[B]``: pytorch_msssim's MS-SSIM of ``[B, H, W, C]`` images."""
    out = np.zeros(x.shape[0])
    for n in range(x.shape[0]):
        per_channel = []
        for c in range(x.shape[-1]):
            a, b, value = x[n, ..., c], y[n, ..., c], 1.0
            for j, w in enumerate(weights):
                s, cs = ref_ssim_cs(a, b, **kw)
                value *= max(cs if j < len(weights) - 1 else s, 0.0) ** w
                a, b = ref_avg_pool(a), ref_avg_pool(b)
            per_channel.append(value)
        out[n] = np.mean(per_channel)
    return out


def _images(rng, shape, noise=(0.05, 0.2)):
    """Smooth ``[0, 1]`` textures ``x`` and noisier copies ``y`` (one noise level per image)."""
    x = ndimage.gaussian_filter(rng.uniform(size=shape), (0, 1.5, 1.5, 0))
    x = (x - x.min()) / (x.max() - x.min())
    sd = np.resize(np.asarray(noise), shape[0])[:, None, None, None]
    return x, np.clip(x + sd * rng.normal(size=shape), 0.0, 1.0)


SSIM_CASES = {
    "default": ((2, 32, 32, 3), {}),
    # [-1, 1] images, another window and constants, non-square odd sides.
    "range2_window7": ((2, 23, 40, 2), dict(data_range=2.0, window_size=7, sigma=1.0,
                                             k1=0.02, k2=0.05)),
}


@pytest.mark.parametrize("case", SSIM_CASES)
def test_ssim_matches_reference(case, rng):
    shape, kw = SSIM_CASES[case]
    x, y = _images(rng, shape)
    if kw.get("data_range") == 2.0:
        x, y = 2 * x - 1, 2 * y - 1
    got = ssim(x.astype(np.float32), y.astype(np.float32), **kw)
    assert got.shape == (shape[0],) and got.dtype == jnp.float32
    # The reference sees the same float32-rounded pixels.
    assert_close(got, ref_ssim(x.astype(np.float32).astype(np.float64),
                               y.astype(np.float32).astype(np.float64), **kw))
    k = kw.get("window_size", 11)
    s, cs = ssim_map(x, y, **kw)
    assert s.shape == cs.shape == (shape[0], shape[1] - k + 1, shape[2] - k + 1, shape[3])



def test_flat_bright_images_keep_float32_precision(rng):
    """A small spread on a large mean: ``E[x^2] - E[x]^2`` would cancel in float32 (errors of
    ~4e-6 here); the module centres the images first and stays at float32 rounding."""
    x, y = _images(rng, (2, 32, 32, 3))
    x, y = (np.float32(0.9 + 0.02 * a) for a in (x, y))
    assert_close(ssim(x, y), ref_ssim(x.astype(np.float64), y.astype(np.float64)), 1e-6)

MS_CASES = {
    # 165 -> 83 -> 42 -> 21 -> 11 and 180 -> 90 -> 45 -> 23 -> 12: odd sides at several scales.
    "default": ((2, 165, 180, 1), {}),
    "3_scales_window7": ((2, 27, 33, 2), dict(window_size=7, sigma=1.0,
                                              weights=(0.2, 0.3, 0.5))),
}


@pytest.mark.parametrize("case", MS_CASES)
def test_ms_ssim_matches_reference(case, rng):
    shape, kw = MS_CASES[case]
    x, y = _images(rng, shape)
    x, y = x.astype(np.float32), y.astype(np.float32)
    got = ms_ssim(x, y, **kw)
    assert got.shape == (shape[0],) and got.dtype == jnp.float32
    ref = ref_ms_ssim(x.astype(np.float64), y.astype(np.float64), **kw)
    assert 0.1 < ref.min() and ref.max() < 0.99  # a discriminating case, not 0 or 1
    assert_close(got, ref)
    # Anti-correlated images: negative cs, clamped to 0 as in pytorch_msssim.
    assert_close(ms_ssim(x, 1 - x, **kw), ref_ms_ssim(x, 1.0 - x.astype(np.float64), **kw))
    assert float(jnp.max(ms_ssim(x, 1 - x, **kw))) == 0.0


def test_properties_identity_symmetry_range_noise(rng):
    x, _ = _images(rng, (1, 32, 32, 3))
    x = np.repeat(x, 5, axis=0).astype(np.float32)
    y = np.clip(x + np.array([0.0, 0.02, 0.05, 0.1, 0.3])[:, None, None, None]
                * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    assert_close(ssim(x, x), np.ones(5), 1e-6)
    xy = np.asarray(ssim(x, y))
    assert_close(ssim(y, x), xy, 1e-6)
    assert xy[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(xy) < 0), xy  # more noise, lower SSIM
    anti = np.asarray(ssim(x, 1 - x))
    assert np.all(anti >= -1.0) and np.all(anti < 0) and np.all(xy <= 1.0 + 1e-6)


def test_ms_ssim_identity(rng):
    x, y = _images(rng, (1, 165, 165, 1))
    assert_close(ms_ssim(x, x), np.ones(1), 1e-6)
    assert_close(ms_ssim(y, x), ms_ssim(x, y), 1e-6)


def test_ssim_loss_jit_grad(rng):
    x, y = (a.astype(np.float32) for a in _images(rng, (2, 32, 32, 3)))
    loss, metrics = ssim_loss(x, y)
    assert set(metrics) == {"loss", "ssim"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    assert_close(loss, 1.0 - np.mean(ref_ssim(x.astype(np.float64), y.astype(np.float64))))
    assert_close(metrics["ssim"], 1.0 - loss, 1e-6)
    grad = jax.jit(jax.grad(lambda p: ssim_loss(p, y)[0]))(x)
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_ms_ssim_loss_grad_finite_where_clamped(rng):
    """A clamped (negative-cs) image scores 0 with a zero gradient, not NaN for the batch."""
    x, y = (a.astype(np.float32) for a in _images(rng, (2, 165, 170, 1)))
    y[1] = 1 - x[1]
    loss, metrics = ms_ssim_loss(x, y)
    assert set(metrics) == {"loss", "ms_ssim"}
    ref = ref_ms_ssim(x.astype(np.float64), y.astype(np.float64))
    assert ref[1] == 0.0
    assert_close(loss, 1.0 - ref.mean())
    grad = np.asarray(jax.jit(jax.grad(lambda p: ms_ssim_loss(p, y)[0]))(x))
    assert np.isfinite(grad).all()
    assert np.abs(grad[0]).max() > 0 and not grad[1].any()


def test_mask_drops_images_whatever_they_hold(rng):
    x, y = (a.astype(np.float32) for a in _images(rng, (3, 24, 24, 2)))
    x[1], y[2] = np.nan, np.inf
    mask = np.array([True, False, False])
    loss, _ = ssim_loss(x, y, mask)
    assert_close(loss, 1.0 - ssim(x[:1], y[:1])[0], 1e-6)
    grad = np.asarray(jax.grad(lambda p: ssim_loss(p, y, mask.astype(np.float32))[0])(x))
    assert np.isfinite(grad).all() and not grad[1:].any() and np.abs(grad[0]).max() > 0
    # Nothing valid: the mean is 0 (``masked_mean``), the loss 1.
    assert float(ssim_loss(x, y, np.zeros(3, bool))[0]) == 1.0


def test_bfloat16_input_is_computed_in_float32(rng):
    x, y = _images(rng, (2, 32, 32, 3))
    xb, yb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
    got = ssim(xb, yb)
    assert got.dtype == jnp.float32
    assert_close(got, ssim(xb.astype(jnp.float32), yb.astype(jnp.float32)), 1e-6)
    loss, _ = ssim_loss(xb, yb)
    assert loss.dtype == jnp.float32


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="too small"):
        ssim(jnp.zeros((1, 10, 32, 1)), jnp.zeros((1, 10, 32, 1)))
    # pytorch_msssim's bound: both sides > (11 - 1) * 2**4 = 160 for 5 scales.
    with pytest.raises(ValueError, match=r"too small.*>= 161"):
        ms_ssim(jnp.zeros((1, 160, 200, 1)), jnp.zeros((1, 160, 200, 1)))
    with pytest.raises(ValueError, match=r"too small.*>= 41"):  # 3 scales: > 10 * 2**2
        ms_ssim(jnp.zeros((1, 40, 40, 1)), jnp.zeros((1, 40, 40, 1)), weights=(0.3, 0.3, 0.4))
    with pytest.raises(ValueError, match="same shape"):
        ssim(jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16, 2)), window_size=7)
    with pytest.raises(ValueError, match="odd"):
        ssim(jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16, 1)), window_size=8)
