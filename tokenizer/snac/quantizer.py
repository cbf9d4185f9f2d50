"""SNAC's multi-scale residual vector quantizer.

Level ``l`` of ``ResidualVectorQuantize`` sees the residual left by the levels before it,
average-pools it by its stride ``s_l`` (coarse levels first: 4, 2, 1 for the 24 kHz
model), projects it to ``codebook_dim`` (factorised codes, ViT-VQGAN), picks the nearest
codebook entry by cosine similarity (both sides l2-normalised), projects the *raw* entry
back, and repeats it ``s_l`` times. Codes of level l: ``int32 [B, T / s_l]``.

Training: a straight-through estimator carries gradients past the lookup, and each level
has DAC's commitment ``|z_e - sg(z_q)|^2`` and codebook ``|sg(z_e) - z_q|^2`` losses on
the projected (un-normalised) vectors, averaged per example.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from tokenizer.snac.layers import wn_conv


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||, eps)`` over the last axis (``torch.nn.functional.normalize``)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class QuantizerOutput:
    """z_q ``[B, T, dim]``; codes: one ``int32 [B, T / s_l]`` per level; commitment and
    codebook: ``[B]`` summed over levels."""

    z_q: jax.Array
    codes: list[jax.Array]
    commitment: jax.Array
    codebook: jax.Array


class VectorQuantize(nnx.Module):
    """One level: ``z [B, T, dim] -> (z_q [B, T, dim], codes [B, T / stride], z_e, entry)``."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, stride: int, *,
                 dtype=None, rngs: nnx.Rngs):
        self.stride, self.codebook_size = stride, codebook_size
        self.in_proj = wn_conv(dim, codebook_dim, 1, dtype=dtype, rngs=rngs)
        self.out_proj = wn_conv(codebook_dim, dim, 1, dtype=dtype, rngs=rngs)
        # torch.nn.Embedding's N(0, 1) initialisation
        self.codebook = ax.param(rngs, nnx.initializers.normal(1.0),
                                 (codebook_size, codebook_dim), (ax.VOCAB, None))

    def nearest(self, z_e: jax.Array) -> jax.Array:
        """``z_e [B, T, d] -> codes int32 [B, T]``: the entry of largest cosine similarity,
        by the same squared distance of normalised vectors the PyTorch package computes
        (so that near-ties resolve alike)."""
        enc = l2_normalize(z_e.astype(jnp.float32))
        cb = l2_normalize(self.codebook[...].astype(jnp.float32))
        dist = (jnp.sum(enc ** 2, axis=-1, keepdims=True)
                - 2 * jnp.einsum("btd,kd->btk", enc, cb)
                + jnp.sum(cb ** 2, axis=-1))
        return jnp.argmax(-dist, axis=-1).astype(jnp.int32)

    def lookup(self, codes: jax.Array) -> jax.Array:
        """``codes [B, T'] -> [B, T' * stride, dim]`` (the decode path)."""
        entry = jnp.take(self.codebook[...], codes, axis=0)
        return jnp.repeat(self.out_proj(entry), self.stride, axis=1)

    def __call__(self, z: jax.Array):
        b, t, c = z.shape
        if t % self.stride:
            raise ValueError(f"VectorQuantize: {t} frames is not a multiple of the stride "
                             f"{self.stride}")
        if self.stride > 1:
            z = z.reshape(b, t // self.stride, self.stride, c).mean(axis=2)
        z_e = self.in_proj(z)
        codes = self.nearest(z_e)
        entry = jnp.take(self.codebook[...], codes, axis=0).astype(z_e.dtype)
        z_st = z_e + jax.lax.stop_gradient(entry - z_e)  # straight-through
        z_q = jnp.repeat(self.out_proj(z_st), self.stride, axis=1)
        return z_q, codes, z_e, entry


class ResidualVectorQuantize(nnx.Module):
    """``z [B, T, dim] -> QuantizerOutput`` over ``len(strides)`` levels."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, strides, *,
                 dtype=None, rngs: nnx.Rngs):
        self.strides = tuple(strides)
        self.levels = nnx.List([VectorQuantize(dim, codebook_size, codebook_dim, s,
                                               dtype=dtype, rngs=rngs) for s in strides])

    def __call__(self, z: jax.Array) -> QuantizerOutput:
        z_q = jnp.zeros_like(z)
        residual = z
        codes = []
        commitment = codebook = jnp.zeros((z.shape[0],), jnp.float32)
        for level in self.levels:
            zq_l, codes_l, z_e, entry = level(residual)
            z_q = z_q + zq_l
            residual = residual - zq_l
            codes.append(codes_l)
            z_e32, entry32 = z_e.astype(jnp.float32), entry.astype(jnp.float32)
            commitment += jnp.mean((z_e32 - jax.lax.stop_gradient(entry32)) ** 2, axis=(1, 2))
            codebook += jnp.mean((jax.lax.stop_gradient(z_e32) - entry32) ** 2, axis=(1, 2))
        return QuantizerOutput(z_q, codes, commitment, codebook)

    def from_codes(self, codes) -> jax.Array:
        """One ``int [B, T / s_l]`` per level -> ``z_q [B, T, dim]``."""
        if len(codes) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} code levels, got {len(codes)}")
        lengths = {c.shape[1] * s for c, s in zip(codes, self.strides, strict=True)}
        if len(lengths) != 1:
            raise ValueError(f"code lengths {[c.shape[1] for c in codes]} do not fit the "
                             f"strides {self.strides} (level l needs T / s_l codes)")
        out = None
        for level, c in zip(self.levels, codes, strict=True):
            y = level.lookup(jnp.asarray(c, jnp.int32))
            out = y if out is None else out + y
        return out
