"""Conv / ConvTranspose against naive float64 numpy loops in PyTorch weight layouts.

The references index the input directly from the documented contracts (where frame t's
window starts, which samples a transposed conv keeps); they share no padding arithmetic
with the module.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.conv import (
    Conv,
    ConvTranspose,
    conv_output_length,
    conv_padding,
    conv_transpose_output_length,
    conv_transpose_trim,
    conv_transpose_weight_from_torch,
    conv_transpose_weight_to_torch,
    conv_weight_from_torch,
    conv_weight_to_torch,
)
from tests.helpers import assert_close, assert_params_have_axes, fast_cover

B, CIN, COUT = 2, 4, 8
GROUPS = {"g1": 1, "g2": 2, "dw": CIN}






def eff(k, d):
    return (k - 1) * d + 1


# ---------------------------------------------------------------- naive references


def window_start(t, n, k, s, d, mode):
    """Input index of frame t's first tap, straight from the documented contract."""
    ke = eff(k, d)
    if mode == "valid":
        return t * s
    if mode == "causal":
        # The window ends at the last sample of the frame's own hop; a kernel shorter
        # than the hop reads the start of the hop.
        return t * s + s - ke if ke >= s else t * s
    # "same": centred on the hop, half of Ke - s before it (the odd one after), for any n.
    return t * s - max(ke - s, 0) // 2


def n_frames(n, k, s, d, mode):
    return (n - eff(k, d)) // s + 1 if mode == "valid" else math.ceil(n / s)


def ref_conv(x, w_torch, bias, stride, dilation, groups, modes):
    """float64 direct convolution. x [B, *S, Cin], w_torch [out, in/g, *K]."""
    nd = x.ndim - 2
    ks = w_torch.shape[2:]
    cout, cin_g = w_torch.shape[:2]
    cout_g = cout // groups
    sizes = x.shape[1:-1]
    n_out = [n_frames(sizes[i], ks[i], stride[i], dilation[i], modes[i]) for i in range(nd)]
    y = np.zeros((x.shape[0], *n_out, cout))
    for o in itertools.product(*map(range, n_out)):
        starts = [window_start(o[i], sizes[i], ks[i], stride[i], dilation[i], modes[i])
                  for i in range(nd)]
        for k in itertools.product(*map(range, ks)):
            pos = [starts[i] + k[i] * dilation[i] for i in range(nd)]
            if any(p < 0 or p >= sizes[i] for i, p in enumerate(pos)):
                continue  # zero padding
            xv = x[(slice(None), *pos)]
            for g in range(groups):
                wg = w_torch[(slice(g * cout_g, (g + 1) * cout_g), slice(None), *k)]
                y[(slice(None), *o, slice(g * cout_g, (g + 1) * cout_g))] += (
                    xv[:, g * cin_g:(g + 1) * cin_g] @ wg.T)
    return y + bias


def ref_conv_transpose(x, w_torch, bias, stride, dilation, groups, modes):
    """PyTorch ConvTransposeNd by scatter-add: out[t*s + k*d] += x[t] @ w[:, :, k].

    x [B, *S, Cin], w_torch [in, out/g, *K]. Then "valid" keeps the full output,
    "causal" keeps the first N*s samples and "same" the N*s samples starting at
    floor((Ke - s) / 2); samples past the full output are zeros.
    """
    nd = x.ndim - 2
    ks = w_torch.shape[2:]
    cin, cout_g = w_torch.shape[:2]
    cin_g = cin // groups
    sizes = x.shape[1:-1]
    full = [(sizes[i] - 1) * stride[i] + eff(ks[i], dilation[i]) for i in range(nd)]
    y = np.zeros((x.shape[0], *full, cout_g * groups))
    for t in itertools.product(*map(range, sizes)):
        for k in itertools.product(*map(range, ks)):
            pos = tuple(t[i] * stride[i] + k[i] * dilation[i] for i in range(nd))
            for g in range(groups):
                xg = x[(slice(None), *t, slice(g * cin_g, (g + 1) * cin_g))]
                wg = w_torch[(slice(g * cin_g, (g + 1) * cin_g), slice(None), *k)]
                y[(slice(None), *pos, slice(g * cout_g, (g + 1) * cout_g))] += xg @ wg
    for i in range(nd):
        if modes[i] == "valid":
            continue
        n_out = sizes[i] * stride[i]
        start = 0 if modes[i] == "causal" else max(eff(ks[i], dilation[i]) - stride[i], 0) // 2
        pad = max(start + n_out - full[i], 0)
        y = np.pad(y, [(0, 0)] * (i + 1) + [(0, pad)] + [(0, 0)] * (nd - i))
        y = np.take(y, np.arange(start, start + n_out), axis=1 + i)
    return y + bias


def _axis_modes(padding, nd):
    return [padding] + ["same" if padding == "causal" else padding] * (nd - 1)


def build(cls, cin, cout, k, *, stride, dilation, groups, padding, rng, **kw):
    """A module whose weights are set from a random torch-layout weight (via the converters)."""
    # Zero init (overwritten below) skips compiling a random initialiser per shape.
    model = cls(cin, cout, k, stride=stride, dilation=dilation, groups=groups, padding=padding,
                kernel_init=nnx.initializers.zeros_init(), rngs=nnx.Rngs(0), **kw)
    ks = (k,) if isinstance(k, int) else tuple(k)
    if cls is Conv:
        w_torch = rng.standard_normal((cout, cin // groups, *ks))
        model.kernel[...] = jnp.asarray(Conv.from_torch_weight(w_torch), jnp.float32)
    else:
        w_torch = rng.standard_normal((cin, cout // groups, *ks))
        model.kernel[...] = jnp.asarray(ConvTranspose.from_torch_weight(w_torch), jnp.float32)
    bias = rng.standard_normal(cout)
    model.bias[...] = jnp.asarray(bias, jnp.float32)
    return model, w_torch, bias


def _id(v):
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


# ---------------------------------------------------------------- numerical parity

# Kernel 4 (even) and two input lengths make both parities of the "same" padding occur.
# The grids below keep a pairwise-covering slice in the fast subset (fast_cover); CI runs
# every case.
GRID_1D = fast_cover(itertools.product([1, 3, 4, 7], [1, 2, 4], [1, 3], list(GROUPS),
                                       ["same", "causal", "valid"]))


@pytest.mark.parametrize("k,s,d,groups,padding", GRID_1D)
def test_conv1d_matches_naive_loop(k, s, d, groups, padding, rng):
    g = GROUPS[groups]
    model, w, b = build(Conv, CIN, COUT, k, stride=s, dilation=d, groups=g, padding=padding,
                        rng=rng)
    for n in (29, 30):
        x = rng.standard_normal((B, n, CIN))
        y = model(jnp.asarray(x, jnp.float32))
        assert y.shape == (B, n_frames(n, k, s, d, padding), COUT)
        assert y.dtype == jnp.float32
        assert_close(y, ref_conv(x, w, b, (s,), (d,), g, [padding]))


GRID_2D = fast_cover(itertools.product([(1, 1), (3, 3), (7, 3)], [(1, 1), (2, 4)],
                                       [(1, 1), (3, 1)], ["g1", "dw"],
                                       ["same", "causal", "valid"]))


@pytest.mark.parametrize("k,s,d,groups,padding", GRID_2D, ids=_id)
def test_conv2d_matches_naive_loop(k, s, d, groups, padding, rng):
    g = GROUPS[groups]
    model, w, b = build(Conv, CIN, COUT, k, stride=s, dilation=d, groups=g, padding=padding,
                        rng=rng)
    x = rng.standard_normal((B, 21, 11, CIN))
    y = model(jnp.asarray(x, jnp.float32))
    assert_close(y, ref_conv(x, w, b, s, d, g, _axis_modes(padding, 2)))


@pytest.mark.parametrize("k,s,d,groups,padding", GRID_1D)
def test_conv_transpose1d_matches_torch_semantics(k, s, d, groups, padding, rng):
    g = GROUPS[groups]
    model, w, b = build(ConvTranspose, CIN, COUT, k, stride=s, dilation=d, groups=g,
                        padding=padding, rng=rng)
    for n in (1, 11):
        x = rng.standard_normal((B, n, CIN))
        y = model(jnp.asarray(x, jnp.float32))
        expected_len = (n - 1) * s + eff(k, d) if padding == "valid" else n * s
        assert y.shape == (B, expected_len, COUT)
        assert_close(y, ref_conv_transpose(x, w, b, (s,), (d,), g, [padding]))


GRID_T2D = fast_cover(itertools.product([(1, 1), (3, 4), (7, 2)], [(1, 1), (2, 4)],
                                        [(1, 1), (1, 3)], ["g1", "g2"],
                                        ["same", "causal", "valid"]))


@pytest.mark.parametrize("k,s,d,groups,padding", GRID_T2D, ids=_id)
def test_conv_transpose2d_matches_torch_semantics(k, s, d, groups, padding, rng):
    g = GROUPS[groups]
    model, w, b = build(ConvTranspose, CIN, COUT, k, stride=s, dilation=d, groups=g,
                        padding=padding, rng=rng)
    x = rng.standard_normal((B, 5, 4, CIN))
    y = model(jnp.asarray(x, jnp.float32))
    assert_close(y, ref_conv_transpose(x, w, b, s, d, g, _axis_modes(padding, 2)))


@pytest.mark.parametrize("padding,groups,k,s,d", fast_cover(
    (padding, groups, *ksd) for padding in ["same", "valid"] for groups in ["g1", "g2", "dw"]
    for ksd in [(3, 1, 1), (7, 2, 1), (4, 2, 3), (16, 8, 1), (3, 4, 1), (5, 3, 2), (1, 2, 1)]))
def test_conv_transpose_is_adjoint_of_conv(padding, groups, k, s, d, rng):
    """<ConvT(x), y> == <x, Conv(y)> with the torch weight shared between both layouts.

    torch's ConvTranspose(a -> b) weight [a, b/g, K] is the Conv(b -> a) weight: the
    module must be its exact adjoint, including groups, flips and "same" trimming.
    """
    g = GROUPS[groups]
    a, bch = CIN, COUT  # ConvT: a -> bch ; Conv: bch -> a
    w_torch = rng.standard_normal((a, bch // g, k))
    zeros = nnx.initializers.zeros_init()
    convt = ConvTranspose(a, bch, k, stride=s, dilation=d, groups=g, padding=padding,
                          use_bias=False, kernel_init=zeros, rngs=nnx.Rngs(0))
    conv = Conv(bch, a, k, stride=s, dilation=d, groups=g, padding=padding, use_bias=False,
                kernel_init=zeros, rngs=nnx.Rngs(0))
    convt.kernel[...] = jnp.asarray(conv_transpose_weight_from_torch(w_torch), jnp.float32)
    conv.kernel[...] = jnp.asarray(conv_weight_from_torch(w_torch), jnp.float32)
    m = 9
    x = rng.standard_normal((B, m, a))
    n_long = m * s if padding == "same" else (m - 1) * s + eff(k, d)
    y = rng.standard_normal((B, n_long, bch))
    ct_x = np.asarray(convt(jnp.asarray(x, jnp.float32)), np.float64)
    c_y = np.asarray(conv(jnp.asarray(y, jnp.float32)), np.float64)
    assert ct_x.shape == y.shape and c_y.shape == x.shape
    lhs, rhs = np.sum(ct_x * y), np.sum(x * c_y)
    scale = np.sqrt(np.sum(ct_x**2) * np.sum(y**2))
    assert abs(lhs - rhs) <= 1e-5 * scale, (lhs, rhs)


# ---------------------------------------------------------------- length contracts

CONTRACT_CASES = [(1, 1, 1), (3, 1, 1), (4, 1, 1), (1, 2, 1), (2, 2, 1), (3, 2, 1), (4, 2, 1),
                  (7, 2, 3), (3, 3, 1), (2, 4, 1), (8, 4, 1), (7, 4, 3), (5, 5, 2), (3, 8, 1)]
# The module tests keep a slice meeting every k, s and d value in the fast subset.
FAST_CONTRACT_CASES = fast_cover(CONTRACT_CASES, strength=1)


def test_length_helpers_follow_contract():
    for (k, s, d), n in itertools.product(CONTRACT_CASES, range(1, 60)):
        ke = eff(k, d)
        for mode in ("same", "causal"):
            assert conv_output_length(n, k, s, d, mode) == math.ceil(n / s)
            left, right = conv_padding(n, k, s, d, mode)
            assert left >= 0 and right >= 0
            # The padded signal holds exactly ceil(n/s) windows.
            assert (n + left + right - ke) // s + 1 == math.ceil(n / s)
            assert conv_transpose_output_length(n, k, s, d, mode) == n * s
            if mode == "causal":
                assert left == max(ke - s, 0)
        if n >= ke:
            assert conv_output_length(n, k, s, d, "valid") == (n - ke) // s + 1
            assert conv_padding(n, k, s, d, "valid") == (0, 0)
        assert conv_transpose_output_length(n, k, s, d, "valid") == (n - 1) * s + ke
        assert conv_transpose_trim(k, s, d, "causal")[0] == 0


@pytest.mark.parametrize("k,s,d", FAST_CONTRACT_CASES)
def test_module_output_lengths(k, s, d):
    ke = eff(k, d)
    kw = dict(stride=s, dilation=d, kernel_init=nnx.initializers.zeros_init(), rngs=nnx.Rngs(0))
    for padding in ("same", "causal", "valid"):
        conv = Conv(2, 3, k, padding=padding, **kw)
        convt = ConvTranspose(2, 3, k, padding=padding, **kw)
        for n in range(1, 26):
            x = jax.ShapeDtypeStruct((1, n, 2), jnp.float32)
            if padding != "valid":
                assert jax.eval_shape(conv, x).shape == (1, math.ceil(n / s), 3)
                assert jax.eval_shape(convt, x).shape == (1, n * s, 3)
            else:
                if n >= ke:
                    assert jax.eval_shape(conv, x).shape == (1, (n - ke) // s + 1, 3)
                assert jax.eval_shape(convt, x).shape == (1, (n - 1) * s + ke, 3)


@pytest.mark.parametrize("k,s,d,padding", fast_cover(
    ((*ksd, padding) for padding in ["same", "causal"]
     for ksd in [(4, 4, 1), (7, 2, 3), (8, 4, 1), (3, 2, 1), (5, 3, 1)]), (1, 3), strength=1))
def test_frame_alignment_does_not_depend_on_length(k, s, d, padding, rng):
    """Encoding a longer signal keeps every frame of the shorter one whose window lies in
    the shorter signal: frames are anchored to the start, not re-centred per length."""
    conv = Conv(2, 3, k, stride=s, dilation=d, padding=padding, rngs=nnx.Rngs(0))
    x = rng.standard_normal((1, 48, 2)).astype(np.float32)
    y_long = np.asarray(conv(jnp.asarray(x)))
    for n in range(20, 48):
        y = np.asarray(conv(jnp.asarray(x[:, :n])))
        left = conv_padding(n, k, s, d, padding)[0]
        inside = [t for t in range(y.shape[1]) if t * s - left + eff(k, d) <= n]
        assert len(inside) >= 2
        assert_close(y[:, inside], y_long[:, inside].astype(np.float64))


def test_valid_conv_too_short_raises():
    conv = Conv(2, 3, 5, padding="valid", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 5"):
        conv(jnp.zeros((1, 4, 2)))


# ---------------------------------------------------------------- causality


def _dependency(fn, n_in, c=1):
    """Boolean [n_out, n_in]: does output frame i depend on input sample j (channel 0)?"""
    jac = jax.jacobian(lambda v: fn(v[None, :, None].repeat(c, -1))[0, :, 0])(
        jnp.ones((n_in,), jnp.float32))
    return np.asarray(jac) != 0


@pytest.mark.parametrize("k,s,d", FAST_CONTRACT_CASES)
def test_causal_conv_receptive_field_ends_at_own_hop(k, s, d):
    conv = Conv(1, 1, k, stride=s, dilation=d, padding="causal", use_bias=False,
                kernel_init=nnx.initializers.ones_init(), rngs=nnx.Rngs(0))
    n = 37
    dep = _dependency(conv, n)
    ke = eff(k, d)
    for t in range(dep.shape[0]):
        last = t * s + s - 1 if ke >= s else t * s + ke - 1
        seen = np.flatnonzero(dep[t])
        assert seen.size > 0
        assert seen.max() <= last, (t, seen, last)
        if last < n:  # the newest sample of its window is a real one: it is read
            assert seen.max() == last


@pytest.mark.parametrize("k,s,d", [(3, 1, 1), (7, 2, 3), (8, 4, 1), (3, 4, 1), (4, 2, 1)])
def test_causal_conv_ignores_future_samples(k, s, d, rng):
    conv = Conv(3, 5, k, stride=s, dilation=d, padding="causal", rngs=nnx.Rngs(1))
    n = 40
    x = rng.standard_normal((2, n, 3)).astype(np.float32)
    ke = eff(k, d)
    ends = np.array([t * s + (s - 1 if ke >= s else ke - 1) for t in range(math.ceil(n / s))])
    y = np.asarray(conv(jnp.asarray(x)))
    for p in (0, 5, 17, 30):
        x2 = x.copy()
        x2[:, p + 1:] = rng.standard_normal(x2[:, p + 1:].shape)
        y2 = np.asarray(conv(jnp.asarray(x2)))
        safe = ends <= p
        np.testing.assert_array_equal(y[:, safe], y2[:, safe])
        assert np.abs(y[:, ~safe] - y2[:, ~safe]).max() > 1e-3


def test_causal_conv2d_is_causal_in_time_only(rng):
    conv = Conv(2, 3, (5, 3), stride=(2, 1), padding="causal", rngs=nnx.Rngs(0))
    x = rng.standard_normal((1, 20, 6, 2)).astype(np.float32)
    x2 = x.copy()
    x2[:, 11:] += 1.0  # change time steps > 10 (all frequencies)
    y, y2 = np.asarray(conv(jnp.asarray(x))), np.asarray(conv(jnp.asarray(x2)))
    # Frame t ends at input 2t + 1: frames 0..4 end at <= 9, frame 5 reads sample 11.
    np.testing.assert_array_equal(y[:, :5], y2[:, :5])
    assert np.abs(y[:, 5] - y2[:, 5]).max() > 1e-3
    x3 = x.copy()
    x3[:, :, 5] += 1.0  # the last frequency bin feeds its neighbour: not causal along W
    assert np.abs(np.asarray(conv(jnp.asarray(x3)))[:, :, 4] - y[:, :, 4]).max() > 1e-3


# A case per dilation value in the fast subset; CI runs them all.
@pytest.mark.parametrize("k,s,d", fast_cover(
    [(4, 2, 1), (16, 8, 1), (7, 3, 2), (1, 4, 1), (3, 1, 1)], (2,), strength=1))
def test_causal_conv_transpose_depends_on_past_frames_only(k, s, d):
    convt = ConvTranspose(1, 1, k, stride=s, dilation=d, padding="causal", use_bias=False,
                          kernel_init=nnx.initializers.ones_init(), rngs=nnx.Rngs(0))
    n = 9
    dep = _dependency(convt, n)
    assert dep.shape == (n * s, n)
    for j in range(n * s):
        seen = np.flatnonzero(dep[j])
        assert seen.size == 0 or seen.max() <= j // s, (j, seen)
    # Input frame t reaches output sample t*s (tap k=0).
    for t in range(n):
        assert dep[t * s, t]


# ---------------------------------------------------------------- weight norm


@pytest.mark.parametrize("cls", [Conv, ConvTranspose])
@pytest.mark.parametrize("groups", ["g1", "g2"])
def test_weight_norm_init_equals_plain_conv(cls, groups, rng):
    g = GROUPS[groups]
    wn = cls(CIN, COUT, 5, stride=2, groups=g, weight_norm=True, rngs=nnx.Rngs(3))
    plain = cls(CIN, COUT, 5, stride=2, groups=g, rngs=nnx.Rngs(3))
    v = np.asarray(wn.weight_v[...], np.float64)
    g_axis = v.ndim - 1 if cls is Conv else v.ndim - 2
    others = tuple(i for i in range(v.ndim) if i != g_axis)
    assert_close(wn.weight_g[...], np.sqrt(np.sum(v**2, axis=others)))
    plain.kernel[...] = wn.weight_v[...]
    plain.bias[...] = wn.bias[...] + 0.5
    wn.bias[...] = wn.bias[...] + 0.5
    x = jnp.asarray(rng.standard_normal((B, 16, CIN)), jnp.float32)
    assert_close(wn(x), np.asarray(plain(x), np.float64))
    assert ax.logical_axes(wn.weight_g) == ((ax.CONV_OUT,) if cls is Conv else (ax.CONV_IN,))
    assert_params_have_axes(wn)


def test_conv_weight_norm_matches_torch_formula(rng):
    """torch weight_norm(Conv1d, dim=0): w = g * v / ||v||, norm over (in/g, K) per out."""
    conv = Conv(CIN, COUT, 3, groups=2, weight_norm=True, rngs=nnx.Rngs(0))
    v_t = rng.standard_normal((COUT, CIN // 2, 3))
    g_t = rng.uniform(0.5, 2.0, (COUT, 1, 1))
    conv.weight_v[...] = jnp.asarray(conv_weight_from_torch(v_t), jnp.float32)
    conv.weight_g[...] = jnp.asarray(g_t.reshape(-1), jnp.float32)
    w_t = g_t * v_t / np.sqrt(np.sum(v_t**2, axis=(1, 2), keepdims=True))
    assert_close(conv.effective_kernel(), conv_weight_from_torch(w_t))
    x = rng.standard_normal((B, 13, CIN))
    bias = np.asarray(conv.bias[...], np.float64)
    assert_close(conv(jnp.asarray(x, jnp.float32)), ref_conv(x, w_t, bias, (1,), (1,), 2,
                                                             ["same"]))


def test_conv_transpose_weight_norm_matches_torch_formula(rng):
    """torch weight_norm(ConvTranspose1d, dim=0): the norm is per *input* channel."""
    convt = ConvTranspose(CIN, COUT, 6, stride=3, groups=2, padding="valid", weight_norm=True,
                          rngs=nnx.Rngs(0))
    v_t = rng.standard_normal((CIN, COUT // 2, 6))
    g_t = rng.uniform(0.5, 2.0, (CIN, 1, 1))
    convt.weight_v[...] = jnp.asarray(conv_transpose_weight_from_torch(v_t), jnp.float32)
    convt.weight_g[...] = jnp.asarray(g_t.reshape(-1), jnp.float32)
    w_t = g_t * v_t / np.sqrt(np.sum(v_t**2, axis=(1, 2), keepdims=True))
    assert_close(convt.effective_kernel(), conv_transpose_weight_from_torch(w_t))
    x = rng.standard_normal((B, 7, CIN))
    bias = np.asarray(convt.bias[...], np.float64)
    assert_close(convt(jnp.asarray(x, jnp.float32)),
                 ref_conv_transpose(x, w_t, bias, (3,), (1,), 2, ["valid"]))


# ---------------------------------------------------------------- plumbing


def test_torch_weight_converters_round_trip(rng):
    w1, w2 = rng.standard_normal((8, 2, 5)), rng.standard_normal((8, 2, 3, 4))
    assert conv_weight_from_torch(w1).shape == (5, 2, 8)
    assert conv_weight_from_torch(w2).shape == (3, 4, 2, 8)
    assert conv_transpose_weight_from_torch(w1).shape == (5, 8, 2)
    assert conv_transpose_weight_from_torch(w2).shape == (3, 4, 8, 2)
    for w in (w1, w2):
        np.testing.assert_array_equal(conv_weight_to_torch(conv_weight_from_torch(w)), w)
        np.testing.assert_array_equal(
            conv_transpose_weight_to_torch(conv_transpose_weight_from_torch(w)), w)
    # Same kernel element, both layouts: torch w[o, i, k] == ours[k, i, o].
    assert conv_weight_from_torch(w1)[3, 1, 6] == w1[6, 1, 3]
    assert conv_transpose_weight_from_torch(w1)[3, 6, 1] == w1[6, 1, 3]


@pytest.mark.parametrize("weight_norm,nd,cls", fast_cover(
    itertools.product([False, True], [1, 2], [Conv, ConvTranspose]), strength=1))
def test_shapes_dtypes_jit_grad_axes(cls, nd, weight_norm, rng):
    k, s = (5, (3, 2))[nd - 1], (2, (2, 1))[nd - 1]
    model = cls(CIN, COUT, k, stride=s, groups=2, padding="causal", weight_norm=weight_norm,
                rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    spatial = (12,) if nd == 1 else (12, 5)
    x = jnp.asarray(rng.standard_normal((B, *spatial, CIN)), jnp.float32)
    y = model(x)
    assert y.dtype == jnp.float32

    graphdef, state = nnx.split(model)
    y_jit = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))(state, x)
    assert_close(y_jit, np.asarray(y, np.float64))

    grads = nnx.grad(lambda m, x: jnp.sum(m(x) ** 2))(model, x)
    for path, g in nnx.to_flat_state(grads):
        assert np.all(np.isfinite(np.asarray(g[...]))), path
        assert np.any(np.asarray(g[...]) != 0), path
    gx = jax.grad(lambda x: jnp.sum(model(x) ** 2))(x)
    assert gx.shape == x.shape and np.all(np.isfinite(np.asarray(gx)))

    bf = cls(CIN, COUT, k, stride=s, groups=2, padding="causal", weight_norm=weight_norm,
             dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    y_bf = bf(x)
    assert y_bf.dtype == jnp.bfloat16 and y_bf.shape == y.shape
    for _, var in nnx.to_flat_state(nnx.state(bf, nnx.Param)):
        assert var[...].dtype == jnp.float32
    assert_close(np.asarray(y_bf.astype(jnp.float32)), np.asarray(y, np.float64), rtol=2e-2)


def test_leading_axes_and_unbatched_input(rng):
    conv = Conv(CIN, COUT, 3, stride=2, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((3, 2, 10, CIN)), jnp.float32)
    y = conv(x)
    assert y.shape == (3, 2, 5, COUT)
    assert_close(y[1], np.asarray(conv(x[1]), np.float64))
    assert conv(x[1, 0]).shape == (5, COUT)
    assert_close(conv(x[1, 0]), np.asarray(y[1, 0], np.float64))


def test_bad_arguments_fail_fast():
    with pytest.raises(ValueError, match="padding must be one of"):
        Conv(2, 2, 3, padding="full", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="groups=3"):
        Conv(4, 6, 3, groups=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expects"):
        Conv(4, 6, 3, rngs=nnx.Rngs(0))(jnp.zeros((1, 8, 5)))


# ---------------------------------------------------------------- streaming


def _stream(layer, x, chunks):
    """Run ``layer.stream`` over ``x`` cut into chunks of the given sizes."""
    state, outs, start = layer.init_stream(x.shape[0]), [], 0
    for n in chunks:
        y, state = layer.stream(x[:, start:start + n], state)
        outs.append(y)
        start += n
    assert start == x.shape[1]
    return jnp.concatenate(outs, axis=1)


# The stream tests keep a case per stride (conv) and per groups value (transposed) in the
# fast subset; CI runs them all.
@pytest.mark.parametrize("k,s,d,groups", fast_cover([(7, 1, 1, 1), (7, 1, 3, 2), (8, 4, 1, 1),
                                                     (3, 1, 9, CIN), (1, 2, 1, 1), (4, 4, 1, 1)],
                                                    (1,), strength=1))
def test_causal_conv_stream_matches_offline(k, s, d, groups, rng):
    layer = Conv(CIN, COUT, k, stride=s, dilation=d, groups=groups, padding="causal",
                 weight_norm=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((B, 24 * s, CIN)), jnp.float32)
    # Uneven chunks, some shorter than the receptive field.
    got = _stream(layer, x, [s, 5 * s, 2 * s, 16 * s])
    assert_close(got, layer(x), 1e-5)


@pytest.mark.parametrize("k,s,d,groups", fast_cover([(8, 4, 1, 1), (4, 2, 1, 2), (3, 1, 2, 1),
                                                     (2, 4, 1, 1), (10, 5, 1, 1)],
                                                    (3,), strength=1))
def test_causal_conv_transpose_stream_matches_offline(k, s, d, groups, rng):
    layer = ConvTranspose(CIN, COUT, k, stride=s, dilation=d, groups=groups,
                          padding="causal", weight_norm=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((B, 20, CIN)), jnp.float32)
    got = _stream(layer, x, [1, 3, 7, 9])
    assert_close(got, layer(x), 1e-5)


def test_stream_needs_a_causal_1d_layer():
    with pytest.raises(ValueError, match="1-D causal"):
        Conv(CIN, COUT, 3, padding="same", rngs=nnx.Rngs(0)).init_stream(1)
    with pytest.raises(ValueError, match="1-D causal"):
        ConvTranspose(CIN, COUT, (2, 2), padding="causal", rngs=nnx.Rngs(0)).init_stream(1)
    layer = Conv(CIN, COUT, 4, stride=2, padding="causal", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple of the stride 2"):
        layer.stream(jnp.zeros((1, 3, CIN)), layer.init_stream(1))
