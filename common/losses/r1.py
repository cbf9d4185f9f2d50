"""R1 gradient penalty (Mescheder et al. 2018) and instance noise for discriminators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def r1_penalty(
    disc_fn: Callable[[jax.Array], Any], real: jax.Array, *, mask: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean_b ||grad_x sum D(x)|_{x = real_b}||^2`` (Mescheder et al. 2018, "Which
    training methods for GANs do actually converge?"; multiply by ``gamma / 2`` outside).

    disc_fn: ``x -> logits``, an array or any pytree of arrays (a multi-discriminator's
    list, or lists of features and logits: every leaf is summed); it must treat batch
    elements independently (no batch statistics), so the gradient of the batch sum is
    each example's own gradient. real: ``[B, ...]`` (cast to float32). mask: optional
    bool/0-1 broadcastable to ``real`` (e.g. ``[B, N, 1]`` valid samples): gradient
    entries at padded positions are dropped, and examples with nothing valid are left
    out of the mean.

    ``jax.grad`` inside, so the penalty can itself be differentiated (w.r.t. the
    discriminator's parameters closed over by ``disc_fn``) and jitted.

    Returns float32 ``(penalty, {"r1", "r1_grad_norm"})``; ``r1_grad_norm`` is the mean
    per-example gradient norm.
    """
    real = jnp.asarray(real, jnp.float32)

    def summed(x):
        leaves = jax.tree_util.tree_leaves(disc_fn(x))
        return sum(jnp.sum(jnp.asarray(leaf, jnp.float32)) for leaf in leaves)

    grad = jax.grad(summed)(real)
    sq = jnp.square(grad)
    if mask is None:
        rows = jnp.ones(real.shape[:1], bool)
    else:
        valid = jnp.broadcast_to(jnp.asarray(mask) != 0, real.shape)
        sq = jnp.where(valid, sq, 0.0)
        rows = valid.reshape(real.shape[0], -1).any(axis=1)
    per_example = jnp.sum(sq.reshape(real.shape[0], -1), axis=1)
    n = jnp.maximum(jnp.sum(rows, dtype=jnp.float32), 1.0)
    penalty = jnp.sum(jnp.where(rows, per_example, 0.0)) / n
    positive = per_example > 0
    norms = jnp.where(positive, jnp.sqrt(jnp.where(positive, per_example, 1.0)), 0.0)
    grad_norm = jax.lax.stop_gradient(jnp.sum(jnp.where(rows, norms, 0.0)) / n)
    return penalty, {"r1": penalty, "r1_grad_norm": grad_norm}


def instance_noise(key: jax.Array, x: jax.Array, std: float | jax.Array) -> jax.Array:
    """``x + std * N(0, 1)`` (Sønderby et al. 2016), drawn in float32, returned in x's dtype.

    ``std`` may be a traced value (e.g. annealed to 0 over training).
    """
    noise = jax.random.normal(key, jnp.shape(x), jnp.float32)
    return (jnp.asarray(x, jnp.float32) + std * noise).astype(jnp.asarray(x).dtype)
