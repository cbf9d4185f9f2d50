"""The CPU forms of ``common.nn.cpu_conv`` against XLA's convolutions: the shifted
multiply-add depthwise conv (outputs, both gradients and a second derivative, for the
kernels, dilations and paddings the codecs use) and the matmul + overlap-add transposed
conv (kernels shorter than, equal to, a multiple of and not a multiple of the stride);
and ``Conv`` / ``ConvTranspose`` taking them on CPU with the XLA path's numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import cpu_conv
from common.nn.conv import Conv, ConvTranspose
from common.nn.cpu_conv import conv_transpose1d, depthwise_conv1d

TOL = 1e-5  # float32 summation order only


def _xla(x, w, d, left, right):
    return jax.lax.conv_general_dilated(
        x, w[:, None, :], (1,), [(left, right)], rhs_dilation=(d,),
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=x.shape[-1])


CASES = [  # (T, K, dilation, left, right)
    (50, 7, 1, 3, 3), (50, 7, 3, 9, 9), (64, 7, 9, 27, 27), (40, 7, 2, 12, 0),
    (33, 3, 1, 2, 0), (30, 4, 1, 1, 2), (20, 5, 1, 0, 0), (16, 1, 1, 0, 0),
    (12, 7, 3, 20, 5), (25, 31, 1, 15, 15)]


@pytest.mark.parametrize("t,k,d,left,right", CASES)
def test_matches_xla_forward_and_gradients(t, k, d, left, right, rng):
    x = jnp.asarray(rng.normal(size=(2, t, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, 6)), jnp.float32)
    want = _xla(x, w, d, left, right)
    got = depthwise_conv1d(x, w, d, left, right)
    assert got.shape == want.shape
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)
    cot = jnp.asarray(rng.normal(size=want.shape), jnp.float32)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w, d, left, right) * cot)

    for a, b in zip(jax.grad(loss(depthwise_conv1d), (0, 1))(x, w),
                    jax.grad(loss(_xla), (0, 1))(x, w), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL * float(jnp.abs(b).max()))


def test_second_derivative_matches_xla(rng):
    """Reverse over reverse (an R1 penalty differentiates an input gradient)."""
    x = jnp.asarray(rng.normal(size=(1, 30, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)

    def r1(f):
        def penalty(w):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, w, 3, 9, 9))))(x)
            return jnp.sum(gx ** 2)
        return jax.grad(penalty)(w)

    want = r1(_xla)
    np.testing.assert_allclose(r1(depthwise_conv1d), want, rtol=0,
                               atol=TOL * float(jnp.abs(want).max()))


def test_a_kernel_longer_than_the_input_is_an_error(rng):
    with pytest.raises(ValueError, match="shorter than the kernel span"):
        depthwise_conv1d(jnp.zeros((1, 3, 2)), jnp.zeros((7, 2)), 1, 0, 0)


@pytest.mark.parametrize("padding", ["same", "causal"])
def test_conv_takes_the_path_on_cpu_with_the_same_numbers(monkeypatch, padding, rng):
    conv = Conv(8, 8, 7, dilation=3, groups=8, padding=padding, weight_norm=True,
                rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.normal(size=(2, 45, 8)), jnp.float32)
    monkeypatch.setenv(cpu_conv.ENV, "off")
    assert not conv._depthwise(jnp.float32)
    want = conv(x)
    want_grad = jax.grad(lambda m: jnp.sum(m(x) ** 2))(conv)
    monkeypatch.setenv(cpu_conv.ENV, "auto")
    assert conv._depthwise(jnp.float32) == (jax.default_backend() == "cpu")
    monkeypatch.setenv(cpu_conv.ENV, "on")
    assert conv._depthwise(jnp.float32) and not conv._depthwise(jnp.bfloat16)
    np.testing.assert_allclose(conv(x), want, rtol=0, atol=TOL * float(jnp.abs(want).max()))
    got_grad = jax.grad(lambda m: jnp.sum(m(x) ** 2))(conv)
    for a, b in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL * float(jnp.abs(b).max()))
    # not depthwise: a channel multiplier, a stride, or groups < channels
    for other in (Conv(8, 16, 7, groups=8, rngs=nnx.Rngs(0)),
                  Conv(8, 8, 7, stride=2, groups=8, rngs=nnx.Rngs(0)),
                  Conv(8, 8, 7, groups=4, rngs=nnx.Rngs(0))):
        assert not other._depthwise(jnp.float32)
    monkeypatch.setenv(cpu_conv.ENV, "fast")
    with pytest.raises(ValueError, match="TRC_CPU_CONV must be auto, on or off"):
        cpu_conv.use_cpu_forms()


def _xla_transpose(x, w, s):
    k = w.shape[0]
    return jax.lax.conv_general_dilated(
        x, jnp.flip(w, 0), (1,), [(k - 1, k - 1)], lhs_dilation=(s,),
        dimension_numbers=("NWC", "WIO", "NWC"))


@pytest.mark.parametrize("n,k,s", [(9, 16, 8), (7, 6, 3), (10, 4, 2), (5, 7, 3), (6, 3, 4),
                                   (8, 1, 1), (4, 5, 1)])
def test_transposed_matches_xla_forward_and_gradients(n, k, s, rng):
    x = jnp.asarray(rng.normal(size=(2, n, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, 5, 3)), jnp.float32)
    want = _xla_transpose(x, w, s)
    got = conv_transpose1d(x, w, s)
    assert got.shape == want.shape == (2, (n - 1) * s + k, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * float(jnp.abs(want).max()))
    cot = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
    grads = [jax.grad(lambda x, w, f=f: jnp.sum(f(x, w, s) * cot), (0, 1))(x, w)
             for f in (conv_transpose1d, _xla_transpose)]
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL * float(jnp.abs(b).max()))


@pytest.mark.parametrize("padding", ["same", "causal", "valid"])
@pytest.mark.parametrize("k,s", [(16, 8), (7, 3), (3, 4)])
def test_conv_transpose_takes_the_path_with_the_same_numbers(monkeypatch, padding, k, s, rng):
    """Including the streaming chunks, and a kernel shorter than the stride (zeros on
    the right instead of a trim)."""
    layer = ConvTranspose(6, 4, k, stride=s, padding=padding, weight_norm=True,
                          rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.normal(size=(2, 11, 6)), jnp.float32)
    out = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(cpu_conv.ENV, mode)
        assert layer._overlap_add(jnp.float32) == (mode == "on")
        grad = jax.grad(lambda m: jnp.sum(m(x) ** 3))(layer)
        out[mode] = (layer(x), *jax.tree.leaves(grad))
        if padding == "causal":
            state, chunks = layer.init_stream(2), []
            for i in range(0, 11, 4):
                y, state = layer.stream(x[:, i:i + 4], state)
                chunks.append(y)
            out[mode] += (jnp.concatenate(chunks, axis=1),)
    for a, b in zip(out["on"], out["off"], strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL * float(jnp.abs(b).max()))
    assert not ConvTranspose(6, 4, 4, stride=2, groups=2, rngs=nnx.Rngs(0))._overlap_add(
        jnp.float32)
    assert not ConvTranspose(6, 4, 4, stride=2, dilation=2, rngs=nnx.Rngs(0))._overlap_add(
        jnp.float32)
    assert not layer._overlap_add(jnp.bfloat16)
