"""Rotary position embeddings (RoPE) and ALiBi biases.

Positions are arrays, not implicit ``arange``s, and may be fractional: PM-RoPE
(progress-scaled RoPE) and other progress positions pass float positions straight in,
and KV-cached decoding passes the absolute position of each new token.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class RoPEConfig:
    """Static RoPE settings.

    Attributes:
      base: the wavelength base (10_000 in the original; 1e6 in many long-context LMs).
      fraction: share of each head's dimensions that rotate ("partial rotary", e.g.
        0.25 in GPT-NeoX/Pythia, 0.5 in some codecs); the rest pass through unchanged.
      interleaved: rotate adjacent pairs (GPT-J / original RoFormer) instead of the
        two halves of the rotary dims (GPT-NeoX / Llama / Gemma "rotate_half").
      scale: positions are divided by this (linear position interpolation).
    """

    base: float = 10_000.0
    fraction: float = 1.0
    interleaved: bool = False
    scale: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"RoPEConfig.fraction must be in (0, 1], got {self.fraction}")
        if self.base <= 1.0:
            raise ValueError(f"RoPEConfig.base must be > 1, got {self.base}")

    def rotary_dim(self, head_dim: int) -> int:
        """Number of rotating dims: an even count, at most head_dim."""
        rot = int(head_dim * self.fraction) // 2 * 2
        if rot == 0:
            raise ValueError(f"RoPE fraction {self.fraction} leaves no rotary dims of {head_dim}")
        return rot


def rope_frequencies(rotary_dim: int, base: float) -> jax.Array:
    """Inverse frequencies ``base^(-2i/rotary_dim)`` for i in [0, rotary_dim/2): ``[rot/2]``."""
    exponents = jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim
    return 1.0 / (base**exponents)


def apply_rope(x: jax.Array, positions: jax.Array, config: RoPEConfig = RoPEConfig()) -> jax.Array:
    """Rotate the leading ``rotary_dim`` features of every head by its position.

    Args:
      x: ``[B, T, H, D]`` queries or keys.
      positions: ``[B, T]`` or ``[T]``, integer or float positions.
      config: static RoPE settings.

    Returns:
      ``[B, T, H, D]`` in x's dtype. Angles are computed in float32 so large positions
      keep their precision in bfloat16 models.
    """
    head_dim = x.shape[-1]
    rot = config.rotary_dim(head_dim)
    pos = jnp.asarray(positions, jnp.float32) / config.scale
    if pos.ndim == 1:
        pos = pos[None, :]
    angles = pos[..., None] * rope_frequencies(rot, config.base)  # [B, T, rot/2]
    sin = jnp.sin(angles)[:, :, None, :]
    cos = jnp.cos(angles)[:, :, None, :]

    x_rot, x_pass = x[..., :rot].astype(jnp.float32), x[..., rot:]
    if config.interleaved:
        x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
        out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
        out = out.reshape(x_rot.shape)
    else:
        x1, x2 = jnp.split(x_rot, 2, axis=-1)
        out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return jnp.concatenate([out.astype(x.dtype), x_pass], axis=-1)


def alibi_slopes(num_heads: int) -> jax.Array:
    """Per-head ALiBi slopes (Press et al., 2022), incl. the non-power-of-two rule: ``[H]``.

    For a power of two n the slopes are ``2^(-8/n * i)``, i = 1..n. Otherwise the
    slopes of the closest smaller power of two are followed by every other slope of
    the next power of two, as in the reference implementation.
    """

    def pow2_slopes(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = pow2_slopes(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = pow2_slopes(closest) + pow2_slopes(2 * closest)[0::2][: num_heads - closest]
    return jnp.asarray(slopes, jnp.float32)


def alibi_bias(q_positions: jax.Array, k_positions: jax.Array, num_heads: int) -> jax.Array:
    """Additive attention bias ``-slope_h * |q - k|``: ``[B, H, Tq, Tk]`` float32.

    Under a causal mask this equals the original ``slope * (k - q)``; without one it is
    the symmetric form used for bidirectional encoders.
    """
    q = jnp.asarray(q_positions, jnp.float32)
    k = jnp.asarray(k_positions, jnp.float32)
    q = q[None] if q.ndim == 1 else q
    k = k[None] if k.ndim == 1 else k
    dist = jnp.abs(q[:, :, None] - k[:, None, :])  # [B, Tq, Tk]
    return -alibi_slopes(num_heads)[None, :, None, None] * dist[:, None]
