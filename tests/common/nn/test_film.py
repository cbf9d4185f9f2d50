"""FiLM: identity at initialisation, formula after training-like weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.film import FiLM
from tests.helpers import assert_close, assert_params_have_axes

DIM, COND = 12, 5






def film_ref(model, x, cond):
    k = np.asarray(model.proj.kernel[...], np.float64)  # [cond, 2, dim]
    b = np.asarray(model.proj.bias[...], np.float64)
    gb = np.einsum("...c,cjd->...jd", np.asarray(cond, np.float64), k) + b
    if gb.ndim == 3:
        gb = gb[:, None]
    return np.asarray(x, np.float64) * (1 + gb[..., 0, :]) + gb[..., 1, :]


def randomise(model, rng):
    model.proj.kernel[...] = jnp.asarray(rng.standard_normal((COND, 2, DIM)) * 0.4, jnp.float32)
    model.proj.bias[...] = jnp.asarray(rng.standard_normal((2, DIM)) * 0.4, jnp.float32)


@pytest.mark.parametrize("per_frame", [False, True])
def test_identity_at_init(per_frame, rng):
    model = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    assert ax.logical_axes(model.proj.kernel) == (ax.COND, None, ax.EMBED)
    x = rng.standard_normal((2, 9, DIM)).astype(np.float32)
    cond = rng.standard_normal((2, 9, COND) if per_frame else (2, COND)).astype(np.float32)
    y = model(jnp.asarray(x), jnp.asarray(cond))
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("per_frame", [False, True])
def test_formula(per_frame, rng):
    model = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    randomise(model, rng)
    x = rng.standard_normal((2, 9, DIM)).astype(np.float32)
    cond = rng.standard_normal((2, 9, COND) if per_frame else (2, COND)).astype(np.float32)
    y = model(jnp.asarray(x), jnp.asarray(cond))
    assert_close(y, film_ref(model, x, cond))
    if not per_frame:  # the same modulation on every frame
        assert_close(y[:, 3], np.asarray(model(jnp.asarray(x[:, 3:4]), jnp.asarray(cond))[:, 0],
                                         np.float64))


def test_2d_feature_map_broadcast(rng):
    model = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    randomise(model, rng)
    x = rng.standard_normal((2, 4, 3, DIM)).astype(np.float32)  # [B, H, W, C]
    cond = rng.standard_normal((2, COND)).astype(np.float32)
    y = model(jnp.asarray(x), jnp.asarray(cond))
    k = np.asarray(model.proj.kernel[...], np.float64)
    gb = np.einsum("bc,cjd->bjd", cond.astype(np.float64), k) + np.asarray(model.proj.bias[...])
    ref = x * (1 + gb[:, None, None, 0]) + gb[:, None, None, 1]
    assert_close(y, ref)


def test_bf16_jit_grad(rng):
    x = jnp.asarray(rng.standard_normal((2, 9, DIM)), jnp.float32)
    cond = jnp.asarray(rng.standard_normal((2, COND)), jnp.float32)
    model = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    randomise(model, rng)
    bf = FiLM(COND, DIM, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    nnx.update(bf, nnx.state(model))
    y, y_bf = model(x, cond), bf(x, cond)
    assert y_bf.dtype == jnp.bfloat16 and bf.proj.kernel[...].dtype == jnp.float32
    assert_close(np.asarray(y_bf, np.float32), np.asarray(y, np.float64), rtol=2e-2)

    graphdef, state = nnx.split(model)
    y_jit = jax.jit(lambda st, x, c: nnx.merge(graphdef, st)(x, c))(state, x, cond)
    assert_close(y_jit, np.asarray(y, np.float64))

    # From the identity init the gradient still reaches the zero kernel and bias.
    fresh = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    grads = nnx.grad(lambda m: jnp.sum(jnp.sin(m(x, cond))))(fresh)
    for path, g in nnx.to_flat_state(grads):
        assert np.all(np.isfinite(np.asarray(g[...]))) and np.any(np.asarray(g[...]) != 0), path
    gx = jax.grad(lambda x: jnp.sum(model(x, cond) ** 2))(x)
    assert np.all(np.isfinite(np.asarray(gx)))


def test_shape_errors():
    model = FiLM(COND, DIM, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dim=12"):
        model(jnp.zeros((2, 3, DIM + 1)), jnp.zeros((2, COND)))


def test_mlp_and_tanh_bound(rng):
    """With a hidden layer and a bound: identity at init, then
    ``gamma, beta = bound * tanh(proj(silu(hidden(cond))) / bound)``."""
    model = FiLM(COND, DIM, hidden=7, bound=0.5, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    assert ax.logical_axes(model.hidden.kernel) == (ax.COND, ax.MLP)
    assert ax.logical_axes(model.proj.kernel) == (ax.MLP, None, ax.EMBED)
    x = rng.standard_normal((2, 6, DIM)).astype(np.float32)
    cond = rng.standard_normal((2, COND)).astype(np.float32)
    np.testing.assert_array_equal(model(jnp.asarray(x), jnp.asarray(cond)), x)
    model.proj.kernel[...] = jnp.asarray(rng.standard_normal((7, 2, DIM)) * 3, jnp.float32)
    h = np.asarray(cond, np.float64) @ np.asarray(model.hidden.kernel[...], np.float64)
    h += np.asarray(model.hidden.bias[...], np.float64)
    h = h / (1 + np.exp(-h))
    gb = np.einsum("bc,cjd->bjd", h, np.asarray(model.proj.kernel[...], np.float64))
    gb = 0.5 * np.tanh(gb / 0.5)[:, None]
    want = x * (1 + gb[..., 0, :]) + gb[..., 1, :]
    got = np.asarray(model(jnp.asarray(x), jnp.asarray(cond)))
    assert_close(got, want, rtol=1e-5)
    assert 0.4 < np.abs(gb).max() <= 0.5  # squashed to the bound
