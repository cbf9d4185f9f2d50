"""Gradient reversal: identity forward, -lambda * g backward, lambda traced (no retrace)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn.grad_reversal import GradientReversal, gradient_reversal
from common.nn.linear import Linear

LAMBDAS = [0.0, 0.3, 1.0, 2.5, -1.0]


def test_forward_is_identity(rng):
    x = jnp.asarray(rng.standard_normal((2, 5, 3)), jnp.float32)
    np.testing.assert_array_equal(gradient_reversal(x, 0.7), x)
    tree = {"a": x, "b": x[0, :, :1]}
    out = gradient_reversal(tree, 2.0)
    np.testing.assert_array_equal(out["a"], x)
    np.testing.assert_array_equal(out["b"], x[0, :, :1])
    xb = x.astype(jnp.bfloat16)
    assert gradient_reversal(xb).dtype == jnp.bfloat16


@pytest.mark.parametrize("lam", LAMBDAS)
def test_gradient_is_negated_and_scaled(lam, rng):
    x = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
    loss = lambda x, lam: jnp.sum(w * jnp.tanh(gradient_reversal(x, lam)))
    # The gradient arriving at the GRL's output, computed without it.
    upstream = np.asarray(jax.grad(lambda x: jnp.sum(w * jnp.tanh(x)))(x), np.float64)
    gx, glam = jax.grad(loss, argnums=(0, 1))(x, lam)
    np.testing.assert_allclose(gx, -lam * upstream, rtol=1e-6, atol=1e-7)
    assert glam == 0.0
    gx_jit = jax.jit(jax.grad(loss))(x, lam)
    np.testing.assert_allclose(gx_jit, -lam * upstream, rtol=1e-6, atol=1e-7)


def test_lambda_change_does_not_retrace(rng):
    x = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    traces = []

    def grad_fn(x, lam):
        traces.append(1)
        return jax.grad(lambda x: jnp.sum(gradient_reversal(x, lam) ** 2))(x)

    step = jax.jit(chex.assert_max_traces(grad_fn, n=1))
    for lam in LAMBDAS:  # Python floats: weakly typed, traced, one compilation
        np.testing.assert_allclose(step(x, lam), -lam * 2 * np.asarray(x), rtol=1e-6)
    for lam in LAMBDAS:  # and as device scalars from a schedule
        np.testing.assert_allclose(step(x, jnp.asarray(lam)), -lam * 2 * np.asarray(x),
                                   rtol=1e-6)
    assert len(traces) == 1


def test_bf16_cotangent_keeps_dtype(rng):
    x = jnp.asarray(rng.standard_normal((8,)), jnp.bfloat16)
    g = jax.grad(lambda x: jnp.sum(gradient_reversal(x, 0.5).astype(jnp.float32) * 3.0))(x)
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), -1.5, rtol=1e-2)


def test_module_reverses_encoder_gradients(rng):
    """An encoder before the GRL gets exactly the negated gradient; the head after it not."""

    class Net(nnx.Module):
        def __init__(self, lam, rngs):
            self.enc = Linear(5, 4, rngs=rngs)
            self.grl = GradientReversal(lam)
            self.head = Linear(4, 3, rngs=rngs)

        def __call__(self, x, lam=None):
            return self.head(self.grl(self.enc(x), lam))

    x = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    loss = lambda m, *a: jnp.sum(jnp.sin(m(x, *a)))
    # The same weights without the reversal.
    plain = Net(1.0, nnx.Rngs(0))
    g_plain = nnx.grad(lambda m: jnp.sum(jnp.sin(m.head(m.enc(x)))))(plain)
    # Powers of two only: scaling by them is exact in floating point, so the reversed gradient
    # must equal -lam * the plain one bit for bit whatever order XLA multiplies in (a factor
    # like 3 rounds differently on different CPUs).
    for lam, call_lam in [(1.0, None), (0.25, None), (1.0, 4.0)]:
        net = Net(lam, nnx.Rngs(0))
        assert len(nnx.to_flat_state(nnx.state(net.grl))) == 0  # no parameters
        np.testing.assert_array_equal(net(x, call_lam), plain.head(plain.enc(x)))
        args = () if call_lam is None else (call_lam,)
        g = nnx.grad(loss)(net, *args)
        eff = lam if call_lam is None else call_lam
        np.testing.assert_array_equal(g["enc"]["kernel"][...], -eff * g_plain["enc"]["kernel"][...])
        np.testing.assert_array_equal(g["head"]["kernel"][...], g_plain["head"]["kernel"][...])
        graphdef, state = nnx.split(net)
        y_jit = jax.jit(lambda st, gd=graphdef: nnx.merge(gd, st)(x))(state)
        np.testing.assert_array_equal(y_jit, net(x))
