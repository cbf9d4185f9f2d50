"""FeedForward against float64 numpy; dropout switching."""

from __future__ import annotations

from math import erf

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.ffn import FeedForward
from tests.helpers import assert_close, assert_params_have_axes

DIM, HIDDEN = 8, 24






ACT = {
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0),
}


def p64(var):
    return np.asarray(var[...], np.float64)


def ffn_ref(model, x, activation, gated, use_bias):
    def lin(layer, h):
        y = h @ p64(layer.kernel)
        return y + p64(layer.bias) if use_bias else y

    x = np.asarray(x, np.float64)
    act = ACT[activation]
    h = act(lin(model.wi_0, x)) * lin(model.wi_1, x) if gated else act(lin(model.wi, x))
    return lin(model.wo, h)


def randomise(model, rng):
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        var[...] = jnp.asarray(rng.standard_normal(var[...].shape) * 0.3, jnp.float32)


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "relu"])
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_numpy(activation, gated, use_bias, rng):
    model = FeedForward(DIM, HIDDEN, activation=activation, gated=gated, use_bias=use_bias,
                        rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    names = {path for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    expected = {("wi_0", "kernel"), ("wi_1", "kernel")} if gated else {("wi", "kernel")}
    expected |= {("wo", "kernel")}
    if use_bias:
        expected |= {(p[0], "bias") for p in expected}
    assert names == expected
    up = model.wi_0 if gated else model.wi
    assert ax.logical_axes(up.kernel) == (ax.EMBED, ax.MLP)
    assert ax.logical_axes(model.wo.kernel) == (ax.MLP, ax.EMBED)
    if use_bias:
        randomise(model, rng)  # zero-initialised biases would not be tested otherwise
    x = rng.standard_normal((2, 13, DIM)).astype(np.float32)
    y = model(jnp.asarray(x))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert_close(y, ffn_ref(model, x, activation, gated, use_bias))


def test_bf16_compute_jit_and_grad(rng):
    x = jnp.asarray(rng.standard_normal((2, 13, DIM)), jnp.float32)
    model = FeedForward(DIM, HIDDEN, rngs=nnx.Rngs(0))
    bf = FeedForward(DIM, HIDDEN, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    y, y_bf = model(x), bf(x)
    assert y_bf.dtype == jnp.bfloat16
    for _, var in nnx.to_flat_state(nnx.state(bf, nnx.Param)):
        assert var[...].dtype == jnp.float32
    assert_close(np.asarray(y_bf, np.float32), np.asarray(y, np.float64), rtol=2e-2)

    graphdef, state = nnx.split(model)
    y_jit = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))(state, x)
    assert_close(y_jit, np.asarray(y, np.float64))

    grads = nnx.grad(lambda m, x: jnp.sum(m(x) ** 2))(model, x)
    flat = nnx.to_flat_state(grads)
    assert len(flat) == 3
    for path, g in flat:
        assert np.all(np.isfinite(np.asarray(g[...]))) and np.any(np.asarray(g[...]) != 0), path


def test_dropout_switch(rng):
    x = jnp.asarray(rng.standard_normal((4, 16, DIM)), jnp.float32)
    model = FeedForward(DIM, HIDDEN, dropout=0.5, rngs=nnx.Rngs(0, dropout=1))
    ref = ffn_ref(model, x, "silu", True, False)
    assert_close(model(x, deterministic=True), ref)
    y1, y2 = model(x), model(x)  # training mode by default: masks differ per call
    assert np.abs(np.asarray(y1) - ref).max() > 1e-2
    assert np.abs(np.asarray(y1) - np.asarray(y2)).max() > 1e-2
    assert_close(nnx.view(model, deterministic=True)(x), ref)
    # Explicit key at the call.
    ya, yb = model(x, rngs=nnx.Rngs(dropout=7)), model(x, rngs=nnx.Rngs(dropout=7))
    np.testing.assert_array_equal(ya, yb)

    # Inside jit the rng state is carried in the split state.
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, x):
        m = nnx.merge(graphdef, state)
        return m(x), nnx.state(m)

    y3, state = step(state, x)
    y4, state = step(state, x)
    assert np.abs(np.asarray(y3) - np.asarray(y4)).max() > 1e-2

    model.eval()
    assert_close(model(x), ref)


def test_no_dropout_carries_no_rng_state():
    model = FeedForward(DIM, HIDDEN, rngs=nnx.Rngs(0))
    assert len(nnx.to_flat_state(nnx.state(model, nnx.RngState))) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(DIM, HIDDEN, activation="tanh", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dropout"):
        FeedForward(DIM, HIDDEN, dropout=1.0, rngs=nnx.Rngs(0))
