"""Dense projections and token embeddings with logical axis names.

Parameters are stored in float32 (``param_dtype``); the matmul runs in ``dtype``
(e.g. bfloat16) when given, else in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.axes import Axes, Initializer

default_kernel_init = nnx.initializers.lecun_normal()


class Linear(nnx.Module):
    """``y = x @ W + b`` contracting the trailing ``in_features`` axes of x.

    Multi-dimensional features give kernels whose every axis has its own logical name:
    a query projection ``Linear(dim, (heads, head_dim))`` has kernel ``[dim, heads,
    head_dim]``; an output projection ``Linear((heads, head_dim), dim)`` contracts both.

    Shapes: ``x [..., *in_features] -> [..., *out_features]``.
    """

    def __init__(
        self,
        in_features: int | Sequence[int],
        out_features: int | Sequence[int],
        *,
        axes: Axes = (ax.EMBED, ax.MLP),
        use_bias: bool = False,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = nnx.initializers.zeros_init(),
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        in_shape = _as_shape(in_features)
        out_shape = _as_shape(out_features)
        self.in_shape = in_shape
        self.out_shape = out_shape
        self.dtype = dtype
        # Fan-in initialisers must see [prod(in), prod(out)]: init flat, then reshape.
        flat = kernel_init(rngs.params(), (math.prod(in_shape), math.prod(out_shape)),
                           param_dtype)
        self.kernel = ax.wrap(flat.reshape(*in_shape, *out_shape), axes)
        self.bias = (ax.param(rngs, bias_init, out_shape, tuple(axes)[len(in_shape):],
                              param_dtype) if use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        n_in = len(self.in_shape)
        if x.shape[x.ndim - n_in:] != self.in_shape:
            raise ValueError(f"Linear expects trailing dims {self.in_shape}, got {x.shape}")
        dt = ax.compute_dtype(x, self.dtype)
        kernel = self.kernel[...].astype(dt)
        y = jnp.tensordot(x.astype(dt), kernel,
                          axes=(tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))))
        if self.bias is not None:
            y = y + self.bias[...].astype(dt)
        return y


def _as_shape(features: int | Sequence[int]) -> tuple[int, ...]:
    return (int(features),) if isinstance(features, int) else tuple(int(f) for f in features)


class Embed(nnx.Module):
    """Token embedding table ``[vocab, dim]``; ``attend`` reuses it as a tied output head.

    Shapes: ``ids [...] int -> [..., dim]``; ``attend(x [..., dim]) -> [..., vocab]``.
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        embedding_init: Initializer = nnx.initializers.normal(stddev=1.0),
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.num_embeddings = num_embeddings
        self.features = features
        self.dtype = dtype
        self.embedding = ax.param(rngs, embedding_init, (num_embeddings, features),
                                  (ax.VOCAB, ax.EMBED), param_dtype)

    def __call__(self, ids: jax.Array) -> jax.Array:
        table = self.embedding[...]
        out = jnp.take(table, ids, axis=0)
        return out.astype(self.dtype) if self.dtype is not None else out

    def attend(self, x: jax.Array) -> jax.Array:
        dt = ax.compute_dtype(x, self.dtype)
        return jnp.einsum("...d,vd->...v", x.astype(dt), self.embedding[...].astype(dt))
