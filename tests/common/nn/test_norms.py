"""RMSNorm / LayerNorm / GroupNorm / AdaRMSZero against float64 numpy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.norms import AdaRMSZero, GroupNorm, LayerNorm, RMSNorm
from tests.helpers import assert_close, assert_params_have_axes

DIM, COND = 16, 6






def rms_ref(x, eps):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps)


def ln_ref(x, eps):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)


def check_jit_grad(model, *args):
    graphdef, state = nnx.split(model)
    out = model(*args)
    out_jit = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a))(state, *args)
    for o, oj in zip(jax.tree.leaves(out), jax.tree.leaves(out_jit), strict=True):
        assert_close(oj, np.asarray(o, np.float64))
    loss = lambda m, *a: sum(jnp.sum(jnp.sin(o)) for o in jax.tree.leaves(m(*a)))
    grads = nnx.grad(loss)(model, *args)
    for path, g in nnx.to_flat_state(grads):
        assert np.all(np.isfinite(np.asarray(g[...]))), path
        assert np.any(np.asarray(g[...]) != 0), path
    gx = jax.grad(lambda x: loss(model, x, *args[1:]))(args[0])
    assert np.all(np.isfinite(np.asarray(gx)))


# ---------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("zero_centered", [False, True])
def test_rmsnorm_formula(zero_centered, rng):
    norm = RMSNorm(DIM, eps=1e-6, zero_centered=zero_centered)
    assert_params_have_axes(norm)
    assert ax.logical_axes(norm.scale) == (ax.NORM,)
    x = rng.standard_normal((2, 7, DIM)).astype(np.float32) * 3
    # At init both parametrisations are the plain normalisation.
    assert_close(norm(jnp.asarray(x)), rms_ref(x, 1e-6))
    w = rng.standard_normal(DIM).astype(np.float32)
    norm.scale[...] = jnp.asarray(w)
    mult = (1.0 + w.astype(np.float64)) if zero_centered else w
    y = norm(jnp.asarray(x))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert_close(y, rms_ref(x, 1e-6) * mult)
    check_jit_grad(norm, jnp.asarray(x))


def test_rmsnorm_eps_and_no_scale(rng):
    x = rng.standard_normal((3, DIM)).astype(np.float32) * 1e-2  # eps matters at this scale
    norm = RMSNorm(DIM, eps=1e-3, use_scale=False)
    assert len(nnx.to_flat_state(nnx.state(norm, nnx.Param))) == 0
    assert_close(norm(jnp.asarray(x)), rms_ref(x, 1e-3))


def test_rmsnorm_bf16(rng):
    x = rng.standard_normal((2, 9, DIM)).astype(np.float32) * 5
    norm = RMSNorm(DIM, dtype=jnp.bfloat16)
    norm.scale[...] = jnp.asarray(rng.standard_normal(DIM), jnp.float32)
    y = norm(jnp.asarray(x))
    assert y.dtype == jnp.bfloat16 and norm.scale[...].dtype == jnp.float32
    ref = rms_ref(x, 1e-6) * np.asarray(norm.scale[...], np.float64)
    assert_close(np.asarray(y, np.float32), ref, rtol=2e-2)
    y_in = RMSNorm(DIM)(jnp.asarray(x, jnp.bfloat16))  # bf16 input, no dtype: bf16 out
    assert y_in.dtype == jnp.bfloat16
    assert_close(np.asarray(y_in, np.float32), rms_ref(x, 1e-6), rtol=2e-2)


@pytest.mark.parametrize("cls,ref_fn", [(RMSNorm, rms_ref), (LayerNorm, ln_ref)])
def test_bf16_output_is_correctly_rounded(cls, ref_fn, rng):
    """Statistics in float32, one rounding at the end: every bf16 output is within half a
    bf16 ulp of the exact value. Computing in bf16 misses this by a few ulps.
    """
    x = jnp.asarray(rng.standard_normal((8, 512)) * 3, jnp.bfloat16)
    norm = cls(512, eps=1e-6, use_scale=False) if cls is RMSNorm else cls(
        512, eps=1e-6, use_scale=False, use_bias=False)
    y = np.asarray(norm(x), np.float64)
    ref = ref_fn(np.asarray(x, np.float64), 1e-6)
    # bf16 keeps 8 significant bits: for |v| in [2**e, 2**(e+1)) half an ulp is 2**(e-8).
    half_ulp = np.ldexp(1.0, np.frexp(ref)[1] - 9)
    assert np.all(np.abs(y - ref) <= half_ulp * (1 + 1e-3))


# ---------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize("use_bias,use_scale", [(True, True), (False, True), (True, False),
                                                (False, False)])
def test_layernorm_formula(use_bias, use_scale, rng):
    norm = LayerNorm(DIM, use_bias=use_bias, use_scale=use_scale)
    flat = nnx.to_flat_state(nnx.state(norm, nnx.Param))
    assert {p for p, _ in flat} == ({("scale",)} if use_scale else set()) | (
        {("bias",)} if use_bias else set())
    if flat:
        assert_params_have_axes(norm)
    x = rng.standard_normal((2, 7, DIM)).astype(np.float32) * 2 + 1.5
    ref = ln_ref(x, 1e-5)
    if use_scale:
        w = rng.standard_normal(DIM).astype(np.float32)
        norm.scale[...] = jnp.asarray(w)
        ref = ref * w
    if use_bias:
        b = rng.standard_normal(DIM).astype(np.float32)
        norm.bias[...] = jnp.asarray(b)
        ref = ref + b
    y = norm(jnp.asarray(x))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert_close(y, ref)
    if flat:
        check_jit_grad(norm, jnp.asarray(x))


def test_layernorm_eps(rng):
    x = rng.standard_normal((3, DIM)).astype(np.float32) * 1e-2  # eps matters at this scale
    assert_close(LayerNorm(DIM, eps=1e-3)(jnp.asarray(x)), ln_ref(x, 1e-3))


def test_layernorm_large_offset(rng):
    """A one-pass E[x^2] - E[x]^2 variance is off by ~1e-3 here; two-pass is not."""
    x = (rng.standard_normal((4, 256)) + 30.0).astype(np.float32)
    assert_close(LayerNorm(256)(jnp.asarray(x)), ln_ref(x, 1e-5))


def test_layernorm_bf16(rng):
    x = rng.standard_normal((2, 9, DIM)).astype(np.float32)
    norm = LayerNorm(DIM, dtype=jnp.bfloat16)
    y = norm(jnp.asarray(x))
    assert y.dtype == jnp.bfloat16
    assert all(v[...].dtype == jnp.float32
               for _, v in nnx.to_flat_state(nnx.state(norm, nnx.Param)))
    assert_close(np.asarray(y, np.float32), ln_ref(x, 1e-5), rtol=2e-2)


# ---------------------------------------------------------------- AdaRMSZero


def ada_ref(model, x, cond, eps=1e-6):
    k = np.asarray(model.modulation.kernel[...], np.float64)  # [cond, 3, dim]
    b = np.asarray(model.modulation.bias[...], np.float64)  # [3, dim]
    mod = np.einsum("...c,cjd->...jd", np.asarray(cond, np.float64), k) + b
    if mod.ndim == 3:  # per-sequence cond: broadcast over time
        mod = mod[:, None]
    scale, shift, gate = mod[..., 0, :], mod[..., 1, :], mod[..., 2, :]
    return rms_ref(x, eps) * (1 + scale) + shift, gate


@pytest.mark.parametrize("per_frame", [False, True])
def test_ada_rms_zero_is_identity_at_init(per_frame, rng):
    model = AdaRMSZero(DIM, COND, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    assert ax.logical_axes(model.modulation.kernel) == (ax.COND, None, ax.EMBED)
    x = rng.standard_normal((2, 7, DIM)).astype(np.float32)
    cond = rng.standard_normal((2, 7, COND) if per_frame else (2, COND)).astype(np.float32)
    y, gate = model(jnp.asarray(x), jnp.asarray(cond))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert gate.shape == ((2, 7, DIM) if per_frame else (2, 1, DIM))
    np.testing.assert_array_equal(gate, 0.0)
    assert_close(y, rms_ref(x, 1e-6))
    # A residual block built on it starts as the identity, whatever f is.
    f = lambda h: jnp.tanh(h) * 7.0
    np.testing.assert_array_equal(x + gate * f(y), x)


@pytest.mark.parametrize("per_frame", [False, True])
def test_ada_rms_zero_formula(per_frame, rng):
    model = AdaRMSZero(DIM, COND, eps=1e-5, rngs=nnx.Rngs(0))
    model.modulation.kernel[...] = jnp.asarray(rng.standard_normal((COND, 3, DIM)) * 0.3,
                                               jnp.float32)
    model.modulation.bias[...] = jnp.asarray(rng.standard_normal((3, DIM)) * 0.3, jnp.float32)
    # Mean square ~1e-4, so eps = 1e-5 visibly changes the result.
    x = rng.standard_normal((2, 7, DIM)).astype(np.float32) * 1e-2
    cond = rng.standard_normal((2, 7, COND) if per_frame else (2, COND)).astype(np.float32)
    y, gate = model(jnp.asarray(x), jnp.asarray(cond))
    y_ref, gate_ref = ada_ref(model, x, cond, eps=1e-5)
    assert_close(y, y_ref)
    assert_close(gate, gate_ref)
    check_jit_grad(model, jnp.asarray(x), jnp.asarray(cond))


def test_ada_rms_zero_learns_from_init(rng):
    """At init the gradient reaches the zero kernel (otherwise it could never move)."""
    model = AdaRMSZero(DIM, COND, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 7, DIM)), jnp.float32)
    cond = jnp.asarray(rng.standard_normal((2, COND)), jnp.float32)

    def loss(m):
        h, gate = m(x, cond)
        return jnp.sum((x + gate * jnp.tanh(h)) ** 2) + jnp.sum(h**2)

    grads = nnx.grad(loss)(model)
    k = np.asarray(grads["modulation"]["kernel"][...])
    assert np.all(np.isfinite(k)) and np.all(np.abs(k).max(axis=(0, 2)) > 0)


def test_ada_rms_zero_bf16(rng):
    model = AdaRMSZero(DIM, COND, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    model.modulation.kernel[...] = jnp.asarray(rng.standard_normal((COND, 3, DIM)) * 0.3,
                                               jnp.float32)
    x = rng.standard_normal((2, 7, DIM)).astype(np.float32)
    cond = rng.standard_normal((2, COND)).astype(np.float32)
    y, gate = model(jnp.asarray(x), jnp.asarray(cond))
    assert y.dtype == jnp.bfloat16 and gate.dtype == jnp.bfloat16
    assert model.modulation.kernel[...].dtype == jnp.float32
    y_ref, gate_ref = ada_ref(model, x, cond)
    assert_close(np.asarray(y, np.float32), y_ref, rtol=2e-2)
    assert_close(np.asarray(gate, np.float32), gate_ref, rtol=2e-2)


def test_group_norm_matches_torch_formula():
    """``torch.nn.GroupNorm(groups, C)`` on ``[B, C, H, W]``, in float64 numpy: the
    groups are runs of consecutive channels, statistics over a group's channels and all
    positions of one example."""
    rng = np.random.default_rng(0)
    x = (3.0 + 2.0 * rng.normal(size=(2, 5, 6, 8))).astype(np.float32)  # [B, H, W, C]
    norm = GroupNorm(8, 4, eps=1e-6, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.asarray(rng.normal(size=8), jnp.float32)
    norm.bias[...] = jnp.asarray(rng.normal(size=8), jnp.float32)
    xt = np.moveaxis(x.astype(np.float64), -1, 1).reshape(2, 4, -1)  # [B, G, C/G * H * W]
    mu, var = xt.mean(-1, keepdims=True), xt.var(-1, keepdims=True)
    ref = np.moveaxis(((xt - mu) / np.sqrt(var + 1e-6)).reshape(2, 8, 5, 6), 1, -1)
    ref = ref * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
    assert_close(norm(jnp.asarray(x)), ref)
    assert norm(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16
    assert_params_have_axes(norm)
    with pytest.raises(ValueError, match="do not split into 3 groups"):
        GroupNorm(8, 3)
