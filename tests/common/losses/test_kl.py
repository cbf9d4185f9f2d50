"""Gaussian KL divergences against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np

from common.losses import gaussian_kl, gaussian_kl_between
from tests.helpers import assert_close

B, T, D = 3, 6, 4


def _latents(rng, scale=1.0):
    return rng.normal(0, scale, (B, T, D)), rng.normal(0, 0.7 * scale, (B, T, D))


def _mask():
    return np.arange(T)[None, :] < np.array([6, 4, 1])[:, None]  # [B, T] valid positions


def ref_kl_std(mean, logvar, mask=None):
    """Per-dim KL to N(0, 1), averaged over valid positions: ``[D]`` (closed form)."""
    var = np.exp(logvar)
    kl = 0.5 * (var + mean**2 - 1.0 - logvar)  # [B, T, D]
    m = np.ones(kl.shape[:-1], bool) if mask is None else mask
    return kl[m].sum(axis=0) / max(m.sum(), 1)


def ref_kl_between(mq, lq, mp, lp, mask=None):
    vq, vp = np.exp(lq), np.exp(lp)
    kl = 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
    m = np.ones(kl.shape[:-1], bool) if mask is None else mask
    return (kl[m].sum(axis=0) / max(m.sum(), 1)).sum()


def test_gaussian_kl_matches_reference(rng):
    mean, logvar = _latents(rng)
    loss, metrics = gaussian_kl(mean.astype(np.float32), logvar.astype(np.float32))
    per_dim = ref_kl_std(mean, logvar)
    assert_close(loss, per_dim.sum())
    assert_close(metrics["kl"], per_dim.sum())
    assert_close(metrics["kl_dim_max"], per_dim.max())
    assert float(metrics["dims_below_free_bits"]) == 0.0
    assert set(metrics) == {"loss", "kl", "kl_dim_max", "dims_below_free_bits"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    # The closed form is the Monte-Carlo KL (independent check of the formula itself).
    eps = rng.standard_normal((20000, D))
    m, lv = mean[0, 0], logvar[0, 0]
    z = m + np.exp(0.5 * lv) * eps
    log_q = -0.5 * (eps**2 + lv + np.log(2 * np.pi))
    log_p = -0.5 * (z**2 + np.log(2 * np.pi))
    np.testing.assert_allclose((log_q - log_p).mean(0), ref_kl_std(mean[:1, :1], logvar[:1, :1]),
                               atol=0.05)


def test_gaussian_kl_masked_and_padding_contents(rng):
    mean, logvar = _latents(rng)
    mask = _mask()
    loss, _ = gaussian_kl(mean, logvar, mask)
    assert_close(loss, ref_kl_std(mean, logvar, mask).sum())
    junk_mean = np.where(mask[..., None], mean, np.nan)
    junk_logvar = np.where(mask[..., None], logvar, 1e4)  # exp overflows in the padding
    loss2, _ = gaussian_kl(junk_mean, junk_logvar, mask)
    assert_close(loss2, loss, 1e-6)
    g = jax.grad(lambda m, lv: gaussian_kl(m, lv, mask)[0], argnums=(0, 1))(
        jnp.asarray(junk_mean, jnp.float32), jnp.asarray(junk_logvar, jnp.float32))
    for gi in g:
        assert np.isfinite(gi).all() and not np.asarray(gi)[~mask].any()
    # A [B, T, 1] mask and a 0/1 float mask mean the same.
    assert_close(gaussian_kl(mean, logvar, mask[..., None].astype(np.float32))[0], loss, 1e-6)
    # Nothing valid: 0, not NaN.
    assert float(gaussian_kl(mean, logvar, np.zeros((B, T), bool))[0]) == 0.0


def test_free_bits(rng):
    mean, logvar = _latents(rng, scale=0.3)
    mask = _mask()
    per_dim = ref_kl_std(mean, logvar, mask)
    fb = float(np.sort(per_dim)[1] + 1e-3)  # two dims below the floor, two above
    below = per_dim < fb
    assert below.sum() == 2
    loss, metrics = gaussian_kl(mean, logvar, mask, free_bits=fb)
    assert_close(loss, np.maximum(per_dim, fb).sum())
    assert_close(metrics["kl"], per_dim.sum())  # the raw KL is still reported
    assert_close(metrics["dims_below_free_bits"], below.mean())
    # Dims under the floor get no gradient; the others get the plain KL's.
    gm = jax.grad(lambda m: gaussian_kl(m, logvar, mask, free_bits=fb)[0])(
        jnp.asarray(mean, jnp.float32))
    g_plain = jax.grad(lambda m: gaussian_kl(m, logvar, mask)[0])(jnp.asarray(mean, jnp.float32))
    assert not np.asarray(gm)[..., below].any()
    assert_close(gm[..., ~below], g_plain[..., ~below])
    n_valid = mask.sum()
    assert_close(g_plain, np.where(mask[..., None], mean / n_valid, 0.0))  # d KL / d mean
    # Traced free_bits (annealed) works under jit.
    assert_close(jax.jit(lambda f: gaussian_kl(mean, logvar, mask, free_bits=f)[0])(fb), loss,
                 1e-6)


def test_gaussian_kl_between(rng):
    mq, lq = _latents(rng)
    mp, lp = _latents(rng)
    mask = _mask()
    loss, metrics = gaussian_kl_between(mq, lq, mp, lp, mask)
    assert_close(loss, ref_kl_between(mq, lq, mp, lp, mask))
    assert set(metrics) == {"loss", "kl"}
    assert_close(gaussian_kl_between(mq, lq, mp, lp)[0], ref_kl_between(mq, lq, mp, lp))
    # Against a standard normal prior it is gaussian_kl; a broadcast prior [D] works.
    assert_close(gaussian_kl_between(mq, lq, np.zeros(D), np.zeros(D), mask)[0],
                 gaussian_kl(mq, lq, mask)[0], 1e-6)
    # KL(q || q) = 0 with finite gradients (a non-smooth-looking point of expm1(d) - d).
    same, _ = gaussian_kl_between(mq, lq, mq, lq, mask)
    assert abs(float(same)) < 1e-7
    grads = jax.grad(lambda *a: gaussian_kl_between(*a, mask)[0], argnums=(0, 1, 2, 3))(
        *(jnp.asarray(a, jnp.float32) for a in (mq, lq, mq, lq)))
    assert all(np.isfinite(g).all() and np.abs(g).max() < 1e-6 for g in grads)


def test_jit_and_bf16(rng):
    mean, logvar = (jnp.asarray(a, jnp.float32) for a in _latents(rng))
    mask = jnp.asarray(_mask())
    assert_close(jax.jit(gaussian_kl)(mean, logvar, mask)[0], gaussian_kl(mean, logvar, mask)[0],
                 1e-6)
    args = (mean, logvar, mean[::-1], logvar[::-1], mask)
    assert_close(jax.jit(gaussian_kl_between)(*args)[0], gaussian_kl_between(*args)[0], 1e-6)
    mb, lb = mean.astype(jnp.bfloat16), logvar.astype(jnp.bfloat16)
    loss_b = gaussian_kl(mb, lb, mask)[0]
    assert loss_b.dtype == jnp.float32
    assert_close(loss_b, ref_kl_std(np.asarray(mb, np.float64), np.asarray(lb, np.float64),
                                    np.asarray(mask)).sum())
    assert gaussian_kl_between(mb, lb, mb, lb)[0].dtype == jnp.float32
    # Finite gradients at the prior itself (mean 0, logvar 0: KL's minimum).
    g = jax.grad(lambda m, lv: gaussian_kl(m, lv)[0], argnums=(0, 1))(
        jnp.zeros((2, 3, D)), jnp.zeros((2, 3, D)))
    assert all(np.isfinite(x).all() and not np.asarray(x).any() for x in g)
