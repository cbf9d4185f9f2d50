"""What every quantizer returns, and the masked statistics they share.

All quantizers take latents ``z [B, T, D]`` with a valid mask ``[B, T]`` (left-padded
batches: padded frames must not move codebooks, statistics or losses) and return a
``QuantizerOutput``. Losses are unweighted scalars; the codec's config weighs them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class QuantizerOutput:
    """quantized: ``[B, T, D]`` with straight-through gradients to ``z``; codes: int32
    ``[B, T, S]`` (S code streams: 1 for VQ/BSQ/FSQ, the number of levels for RVQ);
    losses / metrics: float32 scalars; logits: ``[B, T, K]`` code scores where a
    quantizer has them (the phoneme VQ's CTC head), else None."""

    quantized: jax.Array
    codes: jax.Array
    losses: dict[str, jax.Array]
    metrics: dict[str, jax.Array]
    logits: jax.Array | None = None


def straight_through(x: jax.Array, q: jax.Array) -> jax.Array:
    """``q`` in the forward pass, identity gradient to ``x`` (Bengio et al. 2013)."""
    return x + jax.lax.stop_gradient(q - x)


def valid_weights(valid: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    """float32 ``[B, T]`` frame weights (1 valid, 0 padded) for latents of ``shape``."""
    if valid is None:
        return jnp.ones(shape[:2], jnp.float32)
    if valid.shape != tuple(shape[:2]):
        raise ValueError(f"valid mask {valid.shape} does not match latents {shape}")
    return valid.astype(jnp.float32)


def masked_mse(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    """Mean over valid frames of the per-frame mean squared difference ``[B, T, D]``."""
    per_frame = jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)), axis=-1)
    return jnp.sum(per_frame * w) / jnp.maximum(jnp.sum(w), 1.0)


def code_histogram(codes: jax.Array, w: jax.Array, size: int) -> jax.Array:
    """float32 ``[size]`` weighted counts of int ``codes [B, T]``."""
    return jnp.zeros((size,), jnp.float32).at[codes.reshape(-1)].add(w.reshape(-1))


def usage_metrics(counts: jax.Array, prefix: str = "") -> dict[str, jax.Array]:
    """Perplexity (exp of the code entropy) and the fraction of codes used, from counts."""
    total = jnp.maximum(jnp.sum(counts), 1.0)
    p = counts / total
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return {f"{prefix}perplexity": jnp.exp(entropy),
            f"{prefix}usage": jnp.mean((counts > 0).astype(jnp.float32))}
