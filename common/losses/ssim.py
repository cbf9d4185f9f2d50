"""SSIM and MS-SSIM between image batches, as metrics and as reconstruction losses.

Images are channels-last ``[B, H, W, C]``, any float dtype (computed in float32). SSIM is
Wang et al. 2004, "Image quality assessment: from error visibility to structural
similarity", with the paper's weighting: a normalised gaussian window (``window_size``
taps, std ``sigma``) applied separably to each channel with no padding ("valid"), so the
SSIM map is ``[B, H - k + 1, W - k + 1, C]`` and only windows that lie inside the image
count; population (not sample) covariances. This is exactly the definition of
``pytorch_msssim.ssim`` and of ``skimage.metrics.structural_similarity(gaussian_weights=
True, sigma=1.5, use_sample_covariance=False, data_range=..., channel_axis=-1)`` (skimage
filters with padding but crops the ``(k - 1) / 2`` border before the mean, which leaves
the same windows). An image's SSIM is the mean of its map over positions and channels
(= the mean of the per-channel SSIMs: every channel has the same number of positions).

MS-SSIM is Wang et al. 2003, "Multiscale structural similarity for image quality
assessment", as ``pytorch_msssim.ms_ssim`` computes it (see ``ms_ssim``).

``data_range`` is the span of the pixel values (1 for ``[0, 1]`` images, 2 for
``[-1, 1]``): it sets the stabilising constants ``C1 = (k1 * data_range)^2`` and
``C2 = (k2 * data_range)^2``, so a wrong value changes the numbers silently.
``data_range``, the window, the constants and the MS-SSIM weights are static (they fix
shapes or are folded in as constants): pass Python numbers, not arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.losses.regression import masked_mean, zero_invalid

# Wang et al. 2003, Table 1 (the weights pytorch_msssim and TF's ssim_multiscale use).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(window_size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D gaussian ``[window_size]`` (float64), centred on the middle tap.

    The taps of ``scipy.ndimage.gaussian_filter1d`` (radius ``(window_size - 1) / 2``) and
    of pytorch_msssim's ``_fspecial_gauss_1d``.
    """
    coords = np.arange(window_size, dtype=np.float64) - window_size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(z: jax.Array, window: np.ndarray) -> jax.Array:
    """Separable "valid" correlation of ``z [..., H, W, C]`` with ``window`` over H and W.

    A weighted sum of shifted slices rather than a convolution: it is exact float32 on
    every backend (a GPU conv may run in TF32, whose 10-bit mantissa is far too coarse
    for the ``E[x^2] - E[x]^2`` variances below, which cancel), and depthwise by
    construction. The gaussian is symmetric, so correlation and convolution agree.
    """
    k = len(window)
    h, w = z.shape[-3] - k + 1, z.shape[-2] - k + 1
    z = sum(float(t) * z[..., i : i + h, :, :] for i, t in enumerate(window))
    return sum(float(t) * z[..., :, i : i + w, :] for i, t in enumerate(window))


def _check_images(x, y, window_size: int, min_side: int, what: str) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"{what}: x and y must be [B, H, W, C] of the same shape, got {x.shape} and {y.shape}"
        )
    if window_size < 1 or window_size % 2 != 1:
        raise ValueError(f"{what}: window_size must be a positive odd int, got {window_size}")
    if min(x.shape[1:3]) < min_side:
        raise ValueError(
            f"{what}: images of {x.shape[1]}x{x.shape[2]} are too small, both sides must be"
            f" >= {min_side} (window_size={window_size})"
        )


# Jitted (window and constants static) so that eager metric calls compile one program per
# shape, not each of the ~60 ops; under an outer jit it is inlined as usual.
@functools.partial(jax.jit, static_argnames=("data_range", "window_size", "sigma", "k1", "k2"))
def ssim_map(
    x: jax.Array,
    y: jax.Array,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[jax.Array, jax.Array]:
    """Per-position ``(ssim, cs)`` maps, float32 ``[B, H - k + 1, W - k + 1, C]`` each.

    x, y: ``[B, H, W, C]`` with ``H, W >= window_size`` (``k``; not checked here: see
    ``ssim``). ``cs`` is the contrast-structure term
    ``(2 sxy + C2) / (sx^2 + sy^2 + C2)``; ``ssim = l * cs`` with the luminance term
    ``l = (2 mx my + C1) / (mx^2 + my^2 + C1)``. Means and (co)variances are gaussian-
    weighted over each window, the variances as ``E[x^2] - E[x]^2`` like the references
    (of the centred images, see below).
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    window = gaussian_window(window_size, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # (Co)variances are shift-invariant, so they are taken of images centred on their
    # per-channel means: E[x^2] - E[x]^2 cancels catastrophically in float32 when the mean
    # dwarfs the spread (a flat bright region), and centring removes most of the mean.
    # The offsets are constants (stop_gradient): the exact gradient does not depend on them.
    ox = jax.lax.stop_gradient(jnp.mean(x, axis=(1, 2), keepdims=True))
    oy = jax.lax.stop_gradient(jnp.mean(y, axis=(1, 2), keepdims=True))
    xc, yc = x - ox, y - oy
    # One filter pass over the five stacked moments instead of five passes.
    mxc, myc, exx, eyy, exy = _filter_valid(jnp.stack([xc, yc, xc * xc, yc * yc, xc * yc]),
                                            window)
    sxx, syy, sxy = exx - mxc * mxc, eyy - myc * myc, exy - mxc * myc
    mx, my = mxc + ox, myc + oy
    cs = (2.0 * sxy + c2) / (sxx + syy + c2)
    return (2.0 * (mx * my) + c1) / (mx * mx + my * my + c1) * cs, cs


def ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Mean SSIM of each image pair: float32 ``[B]``, in ``[-1, 1]`` (1 iff ``x == y``).

    x, y: ``[B, H, W, C]``, any float dtype. Raises ValueError unless both sides are
    ``>= window_size``. Symmetric in ``x`` and ``y``.
    """
    _check_images(x, y, window_size, window_size, "ssim")
    s, _ = ssim_map(x, y, data_range=data_range, window_size=window_size, sigma=sigma,
                    k1=k1, k2=k2)
    return jnp.mean(s, axis=(1, 2, 3))


def _avg_pool_2x2(x: jax.Array) -> jax.Array:
    """``F.avg_pool2d(x, 2, padding=(H % 2, W % 2))`` of ``[B, H, W, C]``: ``ceil(H / 2)``.

    An odd side gets a zero in front (torch pads both ends, but the stride-2 windows never
    reach the one at the back), and padded zeros count in the mean (count_include_pad).
    """
    b, h, w, c = x.shape
    x = jnp.pad(x, ((0, 0), (h % 2, 0), (w % 2, 0), (0, 0)))
    return jnp.mean(x.reshape(b, (h + 1) // 2, 2, (w + 1) // 2, 2, c), axis=(2, 4))


def _safe_pow(v: jax.Array, w: np.ndarray) -> jax.Array:
    """``relu(v) ** w`` with a 0 (not NaN) gradient where ``v <= 0``.

    ``d(v^w)/dv = w v^(w - 1)`` is inf at 0 for ``w < 1``, and inf times relu's 0 is NaN
    (pytorch_msssim's gradient there): one image with a negative ``cs`` would poison the
    whole batch. The value is unchanged, ``0 ** 0 = 1`` included.
    """
    positive = v > 0
    return jnp.where(positive, jnp.where(positive, v, 1.0) ** w, np.power(0.0, w))


def ms_ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> jax.Array:
    """Multi-scale SSIM of each image pair: float32 ``[B]``, in ``[0, 1]``.

    x, y: ``[B, H, W, C]``, any float dtype. With ``L = len(weights)`` scales, each
    halving the previous one with a 2x2 average pool (odd sides zero-padded in front, as
    ``F.avg_pool2d(padding=side % 2)``), per channel
    ``prod_{j < L-1} relu(cs_j) ** w_j * relu(ssim_{L-1}) ** w_{L-1}``, where ``cs_j`` and
    ``ssim_j`` are the mean maps at scale ``j``; then the mean over channels. As in
    pytorch_msssim, negative ``cs`` / ``ssim`` are clamped to 0 by the relu before the
    (fractional) power, so such a channel scores 0; here its gradient is 0, not NaN.

    Raises ValueError unless both sides are ``> (window_size - 1) * 2 ** (L - 1)``
    (pytorch_msssim's bound for its 5 scales: 160 px with the default window), so that the
    coarsest scale still holds a window. The weights are used as given (not renormalised).
    """
    w = tuple(float(v) for v in np.ravel(weights))
    if not w:
        raise ValueError(f"ms_ssim: weights must be a non-empty sequence, got {weights!r}")
    _check_images(x, y, window_size, (window_size - 1) * 2 ** (len(w) - 1) + 1, "ms_ssim")
    return _ms_ssim(x, y, data_range=data_range, window_size=window_size, sigma=sigma,
                    k1=k1, k2=k2, weights=w)


@functools.partial(
    jax.jit, static_argnames=("data_range", "window_size", "sigma", "k1", "k2", "weights")
)
def _ms_ssim(x, y, *, data_range, window_size, sigma, k1, k2, weights) -> jax.Array:
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    kw = dict(data_range=data_range, window_size=window_size, sigma=sigma, k1=k1, k2=k2)
    levels = []
    for j in range(len(weights)):
        s, cs = ssim_map(x, y, **kw)
        if j < len(weights) - 1:
            levels.append(jnp.mean(cs, axis=(1, 2)))  # [B, C]
            x, y = _avg_pool_2x2(x), _avg_pool_2x2(y)
        else:
            levels.append(jnp.mean(s, axis=(1, 2)))
    w = np.asarray(weights, np.float32)[:, None, None]
    per_channel = jnp.prod(_safe_pow(jnp.stack(levels), w), axis=0)  # [B, C]
    return jnp.mean(per_channel, axis=-1)


def _image_mask(mask, shape):
    """``[B]`` image mask -> ``([B] bool, [B, 1, 1, 1] bool)``, or ``(None, None)``."""
    if mask is None:
        return None, None
    valid = jnp.broadcast_to(jnp.asarray(mask) != 0, shape[:1])
    return valid, valid[:, None, None, None]


def _one_minus_mean(similarity, name: str, pred, target, mask, **kw):
    """``1 - mean similarity(pred, target, **kw)`` over the valid images (masked-out
    images zeroed first) and ``{"loss", name: the mean}``."""
    valid, pixel_mask = _image_mask(mask, jnp.shape(pred))
    value = similarity(zero_invalid(pred, pixel_mask), zero_invalid(target, pixel_mask), **kw)
    mean = masked_mean(value, valid)
    loss = 1.0 - mean
    return loss, {"loss": loss, name: mean}


def ssim_loss(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``1 - mean SSIM`` over the valid images of a batch.

    pred, target: ``[B, H, W, C]``, any float dtype; mask: bool/0-1 ``[B]`` of valid images
    (None: all). Masked-out images are zeroed first, so whatever they hold (NaN included)
    changes neither the loss nor the gradient. Returns float32 ``(loss, {"loss",
    "ssim"})``, ``ssim`` the mean SSIM of the valid images.
    """
    return _one_minus_mean(ssim, "ssim", pred, target, mask, data_range=data_range,
                           window_size=window_size, sigma=sigma, k1=k1, k2=k2)


def ms_ssim_loss(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``1 - mean MS-SSIM`` over the valid images of a batch.

    Shapes and masking as ``ssim_loss``; sizes and weights as ``ms_ssim``. Returns float32
    ``(loss, {"loss", "ms_ssim"})``.
    """
    return _one_minus_mean(ms_ssim, "ms_ssim", pred, target, mask, data_range=data_range,
                           window_size=window_size, sigma=sigma, k1=k1, k2=k2,
                           weights=weights)
