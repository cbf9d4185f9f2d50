"""Finite Scalar Quantization (Mentzer et al. 2023).

``z [B, T, D]`` is projected to ``len(levels)`` dimensions; dimension ``i`` is bounded to
``levels[i]`` values by a shifted ``tanh`` and rounded (straight-through). The implicit
codebook is the grid, ``prod(levels)`` codes, all used by construction; no auxiliary
losses. Codes are the grid indices in mixed radix (first dimension most significant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from tokenizer.alpha.components.quantizers.base import (
    QuantizerOutput,
    code_histogram,
    straight_through,
    usage_metrics,
    valid_weights,
)


class FiniteScalarQuantizer(nnx.Module):
    """Shapes: ``z [B, T, D]`` -> ``QuantizerOutput`` with codes ``[B, T, 1]`` in
    ``[0, prod(levels))``; losses empty."""

    def __init__(self, dim: int, levels: Sequence[int] = (8, 5, 5, 5), *, rngs: nnx.Rngs):
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must all be >= 2, got {tuple(levels)}")
        if math.prod(levels) >= 2**31:
            raise ValueError(f"FSQ codebook {math.prod(levels)} does not fit int32")
        self.dim, self.levels = dim, tuple(int(n) for n in levels)
        self.in_proj = Linear(dim, len(levels), axes=(ax.EMBED, None), use_bias=True,
                              rngs=rngs)
        self.out_proj = Linear(len(levels), dim, axes=(None, ax.EMBED), use_bias=True,
                               rngs=rngs)
        lv = np.asarray(self.levels, np.float64)
        self._half = (lv - 1) * (1 - 1e-3) / 2
        self._offset = np.where(lv % 2 == 0, 0.5, 0.0)
        self._shift = np.arctanh(self._offset / self._half)
        # Mixed-radix place values, first dimension most significant.
        self._radix = np.cumprod((*self.levels[1:], 1)[::-1])[::-1].astype(np.int32)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def bound(self, h: jax.Array) -> jax.Array:
        """``[..., n]`` -> values in ``(-levels/2, levels/2)`` (offset for even levels)."""
        f = lambda a: jnp.asarray(a, jnp.float32)
        return jnp.tanh(h + f(self._shift)) * f(self._half) - f(self._offset)

    def grid_to_codes(self, grid: jax.Array) -> jax.Array:
        """Integer grid values (centred) ``[..., n]`` -> int32 codes ``[...]``."""
        idx = jnp.round(grid).astype(jnp.int32) + jnp.asarray(
            [n // 2 for n in self.levels], jnp.int32)
        return jnp.sum(idx * jnp.asarray(self._radix), axis=-1)

    def codes_to_grid(self, codes: jax.Array) -> jax.Array:
        levels = jnp.asarray(self.levels, jnp.int32)
        idx = (codes[..., None] // jnp.asarray(self._radix)) % levels
        return (idx - levels // 2).astype(jnp.float32)

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """int ``[B, T]`` -> ``[B, T, D]``."""
        scale = jnp.asarray([n // 2 for n in self.levels], jnp.float32)
        return self.out_proj(self.codes_to_grid(codes) / scale)

    def __call__(self, z: jax.Array, valid: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> QuantizerOutput:
        del key
        w = valid_weights(valid, z.shape)
        bounded = self.bound(self.in_proj(z).astype(jnp.float32))
        grid = straight_through(bounded, jnp.round(bounded))
        codes = self.grid_to_codes(jax.lax.stop_gradient(grid))
        scale = jnp.asarray([n // 2 for n in self.levels], jnp.float32)
        out = self.out_proj((grid / scale).astype(z.dtype))
        metrics = usage_metrics(code_histogram(codes, w, self.codebook_size))
        return QuantizerOutput(quantized=out, codes=codes[..., None], losses={},
                               metrics=metrics)
