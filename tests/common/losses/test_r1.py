"""R1 penalty against analytic values (incl. its gradient w.r.t. discriminator params)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.losses import instance_noise, r1_penalty
from tests.helpers import assert_close

B, N = 3, 16


def linear_disc(params, x):
    """``D(x) = <w, x> + b`` per example: ``x`` ``[B, N, 1]`` -> logits ``[B]``."""
    return jnp.einsum("bnc,nc->b", x, params["w"]) + params["b"]


def quadratic_disc(params, x):
    """``D(x) = <w, x^2>``: the input gradient ``2 w x`` depends on the data."""
    return jnp.einsum("bnc,nc->b", x * x, params["w"])


def _params(rng):
    return {"w": jnp.asarray(rng.normal(size=(N, 1)), jnp.float32), "b": jnp.float32(0.3)}


def test_linear_discriminator_value_and_param_gradient(rng):
    params = _params(rng)
    real = jnp.asarray(rng.normal(size=(B, N, 1)), jnp.float32)
    w = np.asarray(params["w"], np.float64)
    penalty, metrics = r1_penalty(lambda x: linear_disc(params, x), real)
    # grad_x D = w for every example: penalty = ||w||^2, d penalty / d w = 2 w, d / d b = 0.
    assert_close(penalty, (w**2).sum())
    assert_close(metrics["r1"], (w**2).sum())
    assert_close(metrics["r1_grad_norm"], np.sqrt((w**2).sum()))
    assert set(metrics) == {"r1", "r1_grad_norm"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    g = jax.grad(lambda p: r1_penalty(lambda x: linear_disc(p, x), real)[0])(params)
    assert_close(g["w"], 2 * w)
    assert float(g["b"]) == 0.0


def test_quadratic_discriminator_mask_and_jit(rng):
    params = _params(rng)
    real = jnp.asarray(rng.normal(size=(B, N, 1)), jnp.float32)
    w, x = np.asarray(params["w"], np.float64), np.asarray(real, np.float64)
    lengths = np.array([16, 9, 0])  # the last example has nothing valid
    mask = (np.arange(N)[None, :] < lengths[:, None])[..., None]  # [B, N, 1]

    def penalty(p, r, m):
        return r1_penalty(lambda z: quadratic_disc(p, z), r, mask=m)[0]

    # grad_x = 2 w x: per example sum over valid samples of 4 w^2 x^2, mean over the two
    # examples with valid samples; d/dw = 8 w x^2 summed over the same, / 2.
    per_example = (4 * w[None] ** 2 * x**2 * mask).sum(axis=(1, 2))
    assert_close(penalty(params, real, mask), per_example[:2].mean())
    assert_close(penalty(params, real, None), (4 * w[None] ** 2 * x**2).sum(axis=(1, 2)).mean())
    g = jax.jit(jax.grad(penalty))(params, real, mask)
    assert_close(g["w"], (8 * w[None] * x**2 * mask).sum(axis=0) / 2)
    # Padded samples (any value) do not count.
    junk = jnp.where(mask, real, 1e3)
    assert_close(jax.jit(penalty)(params, junk, mask), per_example[:2].mean(), 1e-6)
    # bf16 data is cast: float32 result equal to the penalty of the rounded data.
    rb = real.astype(jnp.bfloat16)
    pb = penalty(params, rb, mask)
    assert pb.dtype == jnp.float32
    xb = np.asarray(rb, np.float64)
    assert_close(pb, (4 * w[None] ** 2 * xb**2 * mask).sum(axis=(1, 2))[:2].mean())


def test_list_of_logits_and_zero_gradient(rng):
    params = _params(rng)
    real = jnp.asarray(rng.normal(size=(B, N, 1)), jnp.float32)
    w = np.asarray(params["w"], np.float64)

    def multi(x):  # two "discriminators" and a feature map: every leaf is summed
        return [linear_disc(params, x), [2.0 * linear_disc(params, x)[:, None]]]

    assert_close(r1_penalty(multi, real)[0], 9 * (w**2).sum())
    # A constant discriminator: zero input gradient, finite penalty and param gradients.
    flat, metrics = r1_penalty(lambda x: 0.0 * linear_disc(params, x) + params["b"], real)
    assert float(flat) == 0.0 and float(metrics["r1_grad_norm"]) == 0.0
    g = jax.grad(lambda p: r1_penalty(lambda x: 0.0 * linear_disc(p, x), real)[0])(params)
    assert all(np.isfinite(v).all() for v in jax.tree_util.tree_leaves(g))


def test_instance_noise(rng):
    x = jnp.asarray(rng.normal(size=(4, 4096, 1)), jnp.float32)
    key = jax.random.key(0)
    y = instance_noise(key, x, 0.1)
    assert y.shape == x.shape and y.dtype == x.dtype
    noise = np.asarray(y - x)
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    assert_close(instance_noise(key, x, 0.1), y, 1e-7)  # deterministic per key
    assert not np.allclose(instance_noise(jax.random.key(1), x, 0.1), y)
    assert_close(instance_noise(key, x, 0.0), x, 1e-7)
    xb = x.astype(jnp.bfloat16)
    assert instance_noise(key, xb, 0.1).dtype == jnp.bfloat16
    annealed = jax.jit(instance_noise)(key, x, jnp.float32(0.05))  # traced std
    assert_close(np.asarray(annealed - x), noise / 2, 1e-5)


@pytest.mark.parametrize("shape", [(B, N), (B, N, 1)])
def test_waveform_shapes(shape, rng):
    real = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=shape[1:]), jnp.float32)
    penalty, _ = r1_penalty(lambda x: jnp.tanh(x * w).sum(axis=tuple(range(1, x.ndim))), real)
    x, wn = np.asarray(real, np.float64), np.asarray(w, np.float64)
    grad = wn / np.cosh(x * wn) ** 2  # d tanh(w x) / dx
    assert_close(penalty, (grad**2).reshape(B, -1).sum(-1).mean())
