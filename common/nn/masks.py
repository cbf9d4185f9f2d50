"""Masks, built in one place from positions and validity: attention masks, and the
valid masks of strided convolutions' outputs (``downsample_mask``, ``conv_masks``).

Every mask is boolean with True = may attend, shaped ``[B, 1, Tq, Tk]`` so it
broadcasts over heads. Masks are derived from per-token *positions* and *valid* flags
rather than from indices, so the same code serves left-padded batches, packed
sequences, KV-cached decoding (queries at positions beyond the cache slots) and
cross-attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def positions_from_valid(valid: jax.Array) -> jax.Array:
    """Token positions that start at 0 on the first valid token: ``[B, T] -> [B, T]`` int32.

    With left padding the first real token sits at index ``T - length``; counting valid
    tokens keeps its position 0, so RoPE sees the same positions as an unpadded
    sequence. Padding tokens get position 0 (they are masked anyway).
    """
    return jnp.maximum(jnp.cumsum(valid.astype(jnp.int32), axis=-1) - 1, 0)


def valid_from_lengths(lengths: jax.Array, max_len: int, *, left_padded: bool = True) -> jax.Array:
    """``[B]`` lengths -> ``[B, max_len]`` bool; left padding keeps the real tokens last."""
    idx = jnp.arange(max_len)[None, :]
    lengths = jnp.asarray(lengths)[:, None]
    return idx >= max_len - lengths if left_padded else idx < lengths


def make_attention_mask(
    *,
    q_valid: jax.Array | None = None,
    kv_valid: jax.Array | None = None,
    q_positions: jax.Array | None = None,
    kv_positions: jax.Array | None = None,
    causal: bool = False,
    window: int | tuple[int, int] | None = None,
    q_segments: jax.Array | None = None,
    kv_segments: jax.Array | None = None,
) -> jax.Array | None:
    """Combine padding, causal, sliding-window and segment constraints into one mask.

    Args:
      q_valid, kv_valid: ``[B, Tq]``, ``[B, Tk]`` bool padding masks.
      q_positions, kv_positions: ``[B, Tq]``, ``[B, Tk]`` (or unbatched) positions;
        required for ``causal`` and ``window``.
      causal: key position <= query position.
      window: sliding window. An int w keeps keys with ``q - w < k <= q`` when causal and
        ``|q - k| < w`` otherwise; a pair ``(left, right)`` keeps ``-left <= k - q <= right``.
      q_segments, kv_segments: ``[B, Tq]``, ``[B, Tk]`` ids; attend within a segment only
        (packed sequences, or cross-attention restricted per item).

    Returns:
      ``[B, 1, Tq, Tk]`` bool, or None when no constraint applies.
    """
    mask = None

    def conj(m: jax.Array | None, new: jax.Array) -> jax.Array:
        return new if m is None else jnp.logical_and(m, new)

    if q_valid is not None or kv_valid is not None:
        if q_valid is None or kv_valid is None:
            raise ValueError("q_valid and kv_valid go together (use all-True for unpadded)")
        mask = conj(mask, q_valid[:, None, :, None] & kv_valid[:, None, None, :])

    if causal or window is not None:
        if q_positions is None or kv_positions is None:
            raise ValueError("causal and sliding-window masks need q_positions and kv_positions")
        q = jnp.asarray(q_positions)
        k = jnp.asarray(kv_positions)
        q = q[None] if q.ndim == 1 else q
        k = k[None] if k.ndim == 1 else k
        rel = k[:, None, None, :] - q[:, None, :, None]  # [B, 1, Tq, Tk]: k - q
        if causal:
            mask = conj(mask, rel <= 0)
        if window is not None:
            if isinstance(window, int):
                left, right = window - 1, (0 if causal else window - 1)
            else:
                left, right = window
            mask = conj(mask, (rel >= -left) & (rel <= right))

    if q_segments is not None or kv_segments is not None:
        if q_segments is None or kv_segments is None:
            raise ValueError("q_segments and kv_segments go together")
        mask = conj(mask, q_segments[:, None, :, None] == kv_segments[:, None, None, :])
    return mask


def downsample_mask(mask: jax.Array, stride: int, length: int) -> jax.Array:
    """``mask [B, T, ...]`` (bool) at a ``stride`` times lower rate, ``[B, length, ...]``:
    position ``t`` is valid when all of ``mask[:, t*stride : (t+1)*stride]`` (the hop a
    ``Conv(padding="same")`` output advances over) is. Positions past ``T`` count as
    valid (a conv's own end padding, present for an unpadded example too)."""
    need = length * stride
    t = mask.shape[1]
    if t < need:
        pad = [(0, 0), (0, need - t)] + [(0, 0)] * (mask.ndim - 2)
        mask = jnp.pad(mask, pad, constant_values=True)
    mask = mask[:, :need]
    return jnp.all(mask.reshape(mask.shape[0], length, stride, *mask.shape[2:]), axis=2)


def conv_masks(convs, mask: jax.Array) -> list[jax.Array]:
    """The masks of the outputs of a stack of ``Conv(padding="same")`` layers strided on
    the time axis (axis 1; ``conv.stride[0]``), one per conv, from the input's ``mask [B,
    T, ...]``: a position is valid when the whole hop it advances over is."""
    out = []
    for conv in convs:
        s = conv.stride[0]
        mask = downsample_mask(mask, s, -(-mask.shape[1] // s))
        out.append(mask)
    return out
