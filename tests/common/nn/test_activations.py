"""Snake against a float64 numpy formula; the named activation table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.activations import ACTIVATIONS, Snake, get_activation, snake
from tests.helpers import assert_close, assert_params_have_axes


def snake_ref(x, alpha):
    x, alpha = np.asarray(x, np.float64), np.asarray(alpha, np.float64)
    return x + 1.0 / (alpha + 1e-9) * np.sin(alpha * x) ** 2


def test_snake_function_matches_formula(rng):
    x = rng.standard_normal((2, 17, 6)) * 3
    alpha = rng.uniform(0.05, 3.0, 6)
    y = snake(jnp.asarray(x, jnp.float32), jnp.asarray(alpha, jnp.float32))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert_close(y, snake_ref(x.astype(np.float32), alpha.astype(np.float32)))


@pytest.mark.parametrize("shape", [(2, 17, 6), (2, 5, 7, 6), (6,)])
def test_snake_module_default_is_alpha_one(shape, rng):
    model = Snake(6)
    assert_params_have_axes(model)
    assert ax.logical_axes(model.alpha) == (ax.CONV_OUT,)
    np.testing.assert_array_equal(model.alpha[...], np.ones(6, np.float32))
    x = rng.standard_normal(shape).astype(np.float32)
    assert_close(model(jnp.asarray(x)), snake_ref(x, np.ones(6)))


def test_snake_learned_alpha_and_log_scale(rng):
    x = rng.standard_normal((3, 11, 5)).astype(np.float32) * 2
    alpha = rng.uniform(0.1, 2.0, 5).astype(np.float32)
    model = Snake(5, axis_name=ax.EMBED)
    assert ax.logical_axes(model.alpha) == (ax.EMBED,)
    model.alpha[...] = jnp.asarray(alpha)
    assert_close(model(jnp.asarray(x)), snake_ref(x, alpha))

    log_model = Snake(5, log_scale=True)
    np.testing.assert_array_equal(log_model.alpha[...], np.zeros(5, np.float32))
    assert_close(log_model(jnp.asarray(x)), snake_ref(x, np.ones(5)))
    log_alpha = rng.uniform(-2.0, 1.0, 5).astype(np.float32)
    log_model.alpha[...] = jnp.asarray(log_alpha)
    assert_close(log_model(jnp.asarray(x)), snake_ref(x, np.exp(log_alpha.astype(np.float64))))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_snake_zero_alpha_is_finite(dtype):
    """alpha = 0 gives 1/(1e-9) * 0: the reciprocal must not overflow the compute dtype."""
    x = jnp.linspace(-3, 3, 8, dtype=jnp.float32).reshape(1, 2, 4)
    model = Snake(4, dtype=dtype)
    model.alpha[...] = jnp.array([0.0, 1e-12, 0.5, 1.0], jnp.float32)
    y = model(x)
    assert y.dtype == dtype
    assert np.all(np.isfinite(np.asarray(y, np.float32)))
    # Channels 0 and 1 have alpha ~ 0: snake(x) ~ x + alpha x^2.
    assert_close(np.asarray(y[..., :2], np.float32), np.asarray(x[..., :2], np.float64),
                 rtol=1e-5 if dtype == jnp.float32 else 2e-2)


def test_snake_bf16_compute_keeps_f32_params(rng):
    x = rng.standard_normal((2, 33, 8)).astype(np.float32)
    model = Snake(8, dtype=jnp.bfloat16)
    model.alpha[...] = jnp.asarray(rng.uniform(0.2, 2.0, 8), jnp.float32)
    y = model(jnp.asarray(x))
    assert y.dtype == jnp.bfloat16
    assert model.alpha[...].dtype == jnp.float32
    assert_close(np.asarray(y, np.float32), snake_ref(x, np.asarray(model.alpha[...])),
                 rtol=2e-2)
    # bf16 input without a dtype computes in bf16 too.
    assert Snake(8)(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_snake_jit_and_grad(rng):
    x = jnp.asarray(rng.standard_normal((2, 9, 4)), jnp.float32)
    alpha = rng.uniform(0.3, 2.0, 4)
    model = Snake(4)
    model.alpha[...] = jnp.asarray(alpha, jnp.float32)
    graphdef, state = nnx.split(model)
    y_jit = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))(state, x)
    assert_close(y_jit, np.asarray(model(x), np.float64))

    grads = nnx.grad(lambda m, x: jnp.sum(m(x)))(model, x)
    g_alpha = np.asarray(grads["alpha"][...], np.float64)
    # d/da [sin(a x)^2 / a] = 2 x sin(a x) cos(a x) / a - sin(a x)^2 / a^2, summed.
    xx = np.asarray(x, np.float64)
    ref = np.sum(xx * np.sin(2 * alpha * xx) / alpha - np.sin(alpha * xx) ** 2 / alpha**2,
                 axis=(0, 1))
    assert_close(g_alpha, ref)
    gx = jax.grad(lambda x: jnp.sum(model(x)))(x)
    assert np.all(np.isfinite(np.asarray(gx)))


def test_activation_table():
    x = jnp.linspace(-4, 4, 41)
    xx = np.asarray(x, np.float64)
    from math import erf

    ref = {
        "silu": xx / (1 + np.exp(-xx)),
        "gelu": 0.5 * xx * (1 + np.vectorize(erf)(xx / np.sqrt(2))),
        "gelu_tanh": 0.5 * xx * (1 + np.tanh(np.sqrt(2 / np.pi) * (xx + 0.044715 * xx**3))),
        "relu": np.maximum(xx, 0),
    }
    assert set(ACTIVATIONS) == set(ref)
    for name, r in ref.items():
        np.testing.assert_allclose(np.asarray(get_activation(name)(x)), r, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="allowed"):
        get_activation("swish2")
