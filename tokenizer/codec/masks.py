"""Valid masks at every frame rate of a conv codec, for left-padded batches.

A batch of waveforms ``[B, N, 1]`` is left-padded: each utterance's samples are the last
``length`` of the N, and ``valid [B, N]`` is True on them. Every strided layer divides
the rate; the mask at hop ``h`` (samples per frame) marks a frame valid when any of its
samples is, which for left padding is the last ``ceil(length / h)`` frames. Layers zero
their activations on invalid frames, so a valid frame's output does not depend on how
much padding sits before it (as long as the padding is a multiple of the total hop,
which keeps every layer's frame grid aligned to the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from common.nn.masks import make_attention_mask, positions_from_valid, valid_from_lengths

__all__ = ["apply_mask", "downsample_valid", "frame_valids", "lengths_to_valid",
           "make_attention_mask", "positions_from_valid", "upsample_valid",
           "valid_lengths"]


def lengths_to_valid(lengths: jax.Array, n: int) -> jax.Array:
    """int ``[B]`` lengths -> bool ``[B, n]``, left-padded."""
    return valid_from_lengths(lengths, n, left_padded=True)


def valid_lengths(valid: jax.Array) -> jax.Array:
    """bool ``[B, T]`` -> int32 ``[B]`` number of valid steps."""
    return jnp.sum(valid.astype(jnp.int32), axis=-1)


def downsample_valid(valid: jax.Array, hop: int) -> jax.Array:
    """bool ``[B, T]`` -> ``[B, ceil(T / hop)]``: a frame is valid if any of its steps is
    (frames cover ``[t*hop, (t+1)*hop)``; a partial last frame is padded with False)."""
    b, t = valid.shape
    n = -(-t // hop)
    padded = jnp.pad(valid, ((0, 0), (0, n * hop - t)))
    return jnp.any(padded.reshape(b, n, hop), axis=-1)


def upsample_valid(valid: jax.Array, hop: int) -> jax.Array:
    """bool ``[B, T]`` -> ``[B, T * hop]``: every step of a valid frame is valid."""
    return jnp.repeat(valid, hop, axis=-1)


def frame_valids(valid: jax.Array, strides: Sequence[int]) -> list[jax.Array]:
    """Masks after each stride: ``[valid, valid / s0, valid / (s0 s1), ...]``."""
    out = [valid]
    for s in strides:
        out.append(downsample_valid(out[-1], s))
    return out


def apply_mask(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    """Zero ``x [B, T, C]`` on invalid frames (``valid [B, T]``); identity for None."""
    return x if valid is None else jnp.where(valid[..., None], x, jnp.zeros((), x.dtype))
