"""Normalisation layers over the channel (last) axis: RMSNorm, LayerNorm, GroupNorm,
AdaRMSZero, and ``batch_norm`` (flax's BatchNorm with PyTorch's defaults and axis names).

RMSNorm, LayerNorm, GroupNorm and AdaRMSZero compute statistics and apply the affine part in
float32, whatever the compute dtype, and cast the result back to the compute dtype
(``dtype``, else the input's): a mean of squares over a few thousand bf16 values loses
most of its digits, and the normalised activations feed every residual branch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear


def _rms_normalize(x32: jax.Array, eps: float) -> jax.Array:
    ms = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    return x32 * jax.lax.rsqrt(ms + eps)


def _check_dim(name: str, dim: int, x: jax.Array) -> None:
    if x.shape[-1] != dim:
        raise ValueError(f"{name}({dim}) got input with last dimension {x.shape[-1]}")


class RMSNorm(nnx.Module):
    """``y = x / sqrt(mean(x^2) + eps) * scale`` over the last axis.

    ``zero_centered=True`` is Gemma's parametrisation: the parameter ``scale`` starts at
    0 and the multiplier is ``1 + scale`` (weight decay then pulls towards identity).
    ``use_scale=False`` has no parameter at all (e.g. a plain QK-norm).

    Shapes: ``x [..., dim] -> [..., dim]`` in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-6,
        zero_centered: bool = False,
        use_scale: bool = True,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.dim = dim
        self.eps = eps
        self.zero_centered = zero_centered
        self.dtype = dtype
        init = nnx.initializers.zeros_init() if zero_centered else nnx.initializers.ones_init()
        self.scale = (ax.param(rngs, init, (dim,), (ax.NORM,), param_dtype)
                      if use_scale else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_dim("RMSNorm", self.dim, x)
        dt = ax.compute_dtype(x, self.dtype)
        y = _rms_normalize(x.astype(jnp.float32), self.eps)
        if self.scale is not None:
            s = self.scale[...].astype(jnp.float32)
            y = y * (1.0 + s if self.zero_centered else s)
        return y.astype(dt)


class LayerNorm(nnx.Module):
    """``y = (x - mean) / sqrt(var + eps) * scale + bias`` over the last axis.

    The variance is the two-pass ``mean((x - mean)^2)``, not ``E[x^2] - E[x]^2``, which
    cancels catastrophically for inputs with a large offset.

    Shapes: ``x [..., dim] -> [..., dim]`` in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-5,
        use_bias: bool = True,
        use_scale: bool = True,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.dim = dim
        self.eps = eps
        self.dtype = dtype
        self.scale = (ax.param(rngs, nnx.initializers.ones_init(), (dim,), (ax.NORM,),
                               param_dtype) if use_scale else None)
        self.bias = (ax.param(rngs, nnx.initializers.zeros_init(), (dim,), (ax.NORM,),
                              param_dtype) if use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_dim("LayerNorm", self.dim, x)
        dt = ax.compute_dtype(x, self.dtype)
        x32 = x.astype(jnp.float32)
        centred = x32 - jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
        y = centred * jax.lax.rsqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale[...].astype(jnp.float32)
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(dt)


class GroupNorm(nnx.Module):
    """``torch.nn.GroupNorm`` channels last: the channels split into ``groups`` groups of
    consecutive channels, each normalised over its channels and every spatial position
    of the example (two-pass variance, float32), then a per-channel affine.

    Shapes: ``x [B, *spatial, dim] -> [B, *spatial, dim]`` in ``dtype`` (else x's dtype).
    No mask: statistics span every position, so use it on unpadded inputs (images).
    """

    def __init__(self, dim: int, groups: int = 32, *, eps: float = 1e-5,
                 dtype: jnp.dtype | None = None, param_dtype: jnp.dtype = jnp.float32,
                 rngs: nnx.Rngs | None = None):
        if dim % groups:
            raise ValueError(f"GroupNorm: {dim} channels do not split into {groups} groups")
        self.dim, self.groups, self.eps, self.dtype = dim, groups, eps, dtype
        self.scale = ax.param(rngs, nnx.initializers.ones_init(), (dim,), (ax.NORM,),
                              param_dtype)
        self.bias = ax.param(rngs, nnx.initializers.zeros_init(), (dim,), (ax.NORM,),
                             param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_dim("GroupNorm", self.dim, x)
        dt = ax.compute_dtype(x, self.dtype)
        g = x.astype(jnp.float32).reshape(*x.shape[:-1], self.groups, self.dim // self.groups)
        axes = (*range(1, x.ndim - 1), x.ndim)  # spatial positions and the group's channels
        centred = g - jnp.mean(g, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
        y = (centred * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(dt)


def broadcast_cond(c: jax.Array, x: jax.Array) -> jax.Array:
    """Insert singleton axes after the batch axis of ``c [B, ..., D]`` to match x's rank.

    A per-sequence conditioning ``[B, D]`` then broadcasts over time (``x [B, T, ...]``);
    a per-frame one ``[B, T, D]`` is left as it is.
    """
    missing = x.ndim - c.ndim
    if missing < 0:
        raise ValueError(f"conditioning of shape {c.shape} has more axes than x {x.shape}")
    return c.reshape(c.shape[:1] + (1,) * missing + c.shape[1:])


class AdaRMSZero(nnx.Module):
    """Adaptive RMSNorm with a zero-initialised modulation (DiT's adaLN-Zero, on RMSNorm).

    ``x`` is RMS-normalised without a learned scale; a Linear from ``cond`` (weights and
    bias initialised to zero) gives ``scale, shift, gate`` and the layer returns

        (x_norm * (1 + scale) + shift,  gate)

    A block uses it as ``h, gate = norm(x, c); x = x + gate * f(h)``: at initialisation
    ``gate == 0``, so every block is the identity and a deep stack starts well
    conditioned. DiT applies SiLU to the conditioning before this projection; do that
    once on ``cond`` before passing it (it is shared across blocks).

    Shapes: ``x [B, ..., dim]`` with ``cond [B, cond_dim]`` (broadcast over the middle
    axes, e.g. time) or ``cond [B, T, cond_dim]`` per frame; returns
    ``(y [B, ..., dim], gate)`` with gate broadcastable against y
    (``[B, 1, dim]`` for a per-sequence cond), both in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        *,
        eps: float = 1e-6,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.cond_dim = cond_dim
        self.eps = eps
        self.dtype = dtype
        zeros = nnx.initializers.zeros_init()
        # Kernel [cond_dim, 3, dim]: the (scale, shift, gate) axis is its own unsharded
        # axis, so splitting it never cuts through a sharded embed axis.
        self.modulation = Linear(cond_dim, (3, dim), axes=(ax.COND, None, ax.EMBED),
                                 use_bias=True, kernel_init=zeros, bias_init=zeros,
                                 dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_dim("AdaRMSZero", self.dim, x)
        dt = ax.compute_dtype(x, self.dtype)
        mod = self.modulation(cond.astype(dt)).astype(jnp.float32)  # [B, ..., 3, dim]
        scale, shift, gate = (broadcast_cond(mod[..., i, :], x) for i in range(3))
        y = _rms_normalize(x.astype(jnp.float32), self.eps) * (1.0 + scale) + shift
        return y.astype(dt), gate.astype(dt)


def batch_norm(features: int, *, momentum: float = 0.1, epsilon: float = 1e-5,
               rngs: nnx.Rngs) -> nnx.BatchNorm:
    """``nnx.BatchNorm`` over the last axis with PyTorch's ``BatchNorm1d`` defaults given
    in PyTorch's convention (``momentum`` 0.1 is the new batch's weight: flax's 0.9),
    and the logical axis of every other layer's channels on its scale and bias. Pass
    ``mask=`` at the call to take the statistics over valid positions only.

    Shapes: ``x [..., features] -> [..., features]``.
    """
    meta = {"out_sharding": (ax.CONV_OUT,), "eager_sharding": False}
    return nnx.BatchNorm(features, momentum=1.0 - momentum, epsilon=epsilon,
                         scale_metadata=meta, bias_metadata=meta, rngs=rngs)
