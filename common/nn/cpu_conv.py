"""The forms of two convolutions that XLA's CPU backend runs slowly, rewritten as the
multiply-adds and matmuls it runs fast. ``common.nn.conv`` picks them on CPU.

**Depthwise 1-D conv** (one channel per group, stride 1). XLA lowers a grouped
``conv_general_dilated`` with ``feature_group_count == channels`` on CPU to a slow
generic loop: on 2 cores a kernel-7 depthwise conv over ``[1, 96000, 64]`` takes
~540 ms forward, the same sum written as seven shifted slices times the kernel rows
~22 ms. ``depthwise_conv1d`` computes

    y[b, t, c] = sum_k x_pad[b, t + k * d, c] * w[k, c]

with a custom VJP whose input gradient is the same shifted sum of the output gradient
against the reversed kernel and whose kernel gradient is one product-sum per tap, so
the backward pass is as cheap as the forward.

**Transposed 1-D conv** (groups 1, dilation 1). XLA's CPU backward of an
``lhs_dilation`` convolution is pathological: for SNAC's 24 kHz upsamplers (kernel
``2s``) forward + backward takes 5-29 s per layer against ~0.2-0.6 s as below.
``conv_transpose1d`` computes the full output ``y[t*s + k] += x[t] w[k]`` as one matmul
``x @ w`` to ``[B, N, m, s, out]`` (the kernel zero-padded to ``m = ceil(K / s)`` hops)
and an overlap-add of the ``m`` hop-blocks, each a padded shift; autodiff of that is
matmuls too.

Both equal ``conv_general_dilated``'s results up to float32 summation order (~1e-6
relative). ``use_cpu_forms()`` says whether ``Conv`` / ``ConvTranspose`` take them: on
CPU by default, never elsewhere (GPU/TPU convolutions are fast);
``TRC_CPU_CONV=on`` or ``=off`` forces the choice (read at trace time).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

ENV = "TRC_CPU_CONV"


def use_cpu_forms() -> bool:
    """Whether ``common.nn.conv`` uses this module's forms (module docstring)."""
    mode = os.environ.get(ENV, "auto")
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"{ENV} must be auto, on or off, got {mode!r}")
    return mode == "on" or (mode == "auto" and jax.default_backend() == "cpu")


def _taps(xp: jax.Array, w: jax.Array, dilation: int, length: int,
          reverse: bool = False) -> jax.Array:
    """``sum_k xp[:, k*d : k*d + length] * w[k]`` (``reverse``: ``w[K-1-k]``)."""
    kernel = w.shape[0]
    y = None
    for k in range(kernel):
        tap = w[kernel - 1 - k] if reverse else w[k]
        term = xp[:, k * dilation:k * dilation + length] * tap
        y = term if y is None else y + term
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise_conv1d(x: jax.Array, w: jax.Array, dilation: int, left: int,
                     right: int) -> jax.Array:
    """Depthwise conv, stride 1: ``x [B, T, C]``, ``w [K, C]`` -> ``[B, T', C]`` with
    ``T' = T + left + right - (K - 1) * dilation`` (zeros padded on each side)."""
    return _forward(x, w, dilation, left, right)


def _forward(x, w, dilation, left, right):
    span = (w.shape[0] - 1) * dilation
    length = x.shape[1] + left + right - span
    if length < 1:
        raise ValueError(f"depthwise_conv1d: {x.shape[1]} samples with padding "
                         f"({left}, {right}) are shorter than the kernel span {span + 1}")
    xp = jnp.pad(x, ((0, 0), (left, right), (0, 0)))
    return _taps(xp, w, dilation, length)


def _fwd(x, w, dilation, left, right):
    return _forward(x, w, dilation, left, right), (x, w)


def _bwd(dilation, left, right, residuals, g):
    x, w = residuals
    span = (w.shape[0] - 1) * dilation
    t_in, t_out = x.shape[1], g.shape[1]
    # dx[t] = sum_k g[t + left - k*d] w[k]: the output gradient, padded so that every
    # index exists, correlated with the reversed kernel.
    lo, hi = span - left, t_in - t_out + left
    gp = jnp.pad(g, ((0, 0), (max(lo, 0), max(hi, 0)), (0, 0)))
    gp = gp[:, max(-lo, 0):gp.shape[1] - max(-hi, 0)]
    dx = _taps(gp, w, dilation, t_in, reverse=True)
    # dw[k] = sum_{b,t} x_pad[b, t + k*d] g[b, t]
    xp = jnp.pad(x, ((0, 0), (left, right), (0, 0)))
    dw = jnp.stack([jnp.sum(xp[:, k * dilation:k * dilation + t_out] * g, axis=(0, 1))
                    for k in range(w.shape[0])])
    return dx.astype(x.dtype), dw.astype(w.dtype)


depthwise_conv1d.defvjp(_fwd, _bwd)


def conv_transpose1d(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """The full transposed conv ``y[b, t*s + k, o] += x[b, t, i] w[k, i, o]``:
    ``x [B, N, in]``, ``w [K, in, out]`` -> ``[B, (N - 1) * s + K, out]``."""
    b, n, _ = x.shape
    kernel, _, out = w.shape
    hops = -(-kernel // stride)
    wp = jnp.pad(w, ((0, hops * stride - kernel), (0, 0), (0, 0)))
    z = jnp.einsum("bni,kio->bnko", x, wp).reshape(b, n, hops, stride, out)
    y = None
    for j in range(hops):  # hop-block j of input frame t lands on output frame t + j
        block = jnp.pad(z[:, :, j], ((0, 0), (j, hops - 1 - j), (0, 0), (0, 0)))
        y = block if y is None else y + block
    return y.reshape(b, (n + hops - 1) * stride, out)[:, :(n - 1) * stride + kernel]
