"""KL divergences of diagonal Gaussians (VAE / CVAE latents).

Latents are ``[..., D]`` (feature axis last, e.g. ``[B, T, D]``); the KL is summed over
``D`` and averaged over the valid positions ``[...]``. ``exp(x) - 1`` is computed with
``expm1`` so the per-dimension KL stays accurate (and non-negative) near its minimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.losses.regression import zero_invalid


def _position_mask(mask, shape: tuple[int, ...]):
    """Position mask ``[...]`` or ``[..., 1]`` -> bool ``[..., 1]`` against ``[..., D]`` values."""
    if mask is None:
        return None
    mask = jnp.asarray(mask) != 0
    if mask.ndim == len(shape):  # already has the (size-1) feature axis
        return jnp.broadcast_to(mask, (*shape[:-1], 1))
    return jnp.broadcast_to(mask, shape[:-1])[..., None]


def _per_dim_mean(kl: jax.Array, mask) -> tuple[jax.Array, jax.Array]:
    """Mean over valid positions of each feature: ``[D]``, and the number of positions."""
    if mask is None:
        n = jnp.float32(kl.size // kl.shape[-1])
        return jnp.sum(kl.reshape(-1, kl.shape[-1]), axis=0) / jnp.maximum(n, 1.0), n
    valid = jnp.broadcast_to(mask, kl.shape).reshape(-1, kl.shape[-1])
    total = jnp.sum(jnp.where(valid, kl.reshape(-1, kl.shape[-1]), 0.0), axis=0)
    n = jnp.sum(mask, dtype=jnp.float32)  # mask is [..., 1]: one count per position
    return total / jnp.maximum(n, 1.0), n


def gaussian_kl(
    mean: jax.Array, logvar: jax.Array, mask: jax.Array | None = None, *, free_bits: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``KL(N(mean, exp(logvar)) || N(0, I))``, summed over features, mean over positions.

    mean, logvar: ``[..., D]``; mask: bool/0-1 ``[...]`` or ``[..., 1]`` (or broadcastable
    to it) of valid positions. Per dimension ``kl_d = mean over valid positions of
    0.5 * (exp(logvar) - 1 - logvar + mean^2)``; ``kl = sum_d kl_d``.

    ``free_bits`` (nats per dimension, Kingma et al. 2016, "Improved variational inference
    with inverse autoregressive flow", with each dimension its own group): the loss is
    ``sum_d max(kl_d, free_bits)`` with ``kl_d`` averaged over the batch's valid positions
    first, so a dimension below the floor gets no gradient. ``free_bits=0`` is the plain KL.

    Returns float32 ``(loss, metrics)``: ``loss``, ``kl`` (without free bits),
    ``kl_dim_max`` (largest ``kl_d``), ``dims_below_free_bits`` (fraction of dimensions
    whose ``kl_d < free_bits``).
    """
    mean, logvar = jnp.broadcast_arrays(jnp.asarray(mean, jnp.float32),
                                        jnp.asarray(logvar, jnp.float32))
    pmask = _position_mask(mask, mean.shape)
    mean, logvar = zero_invalid(mean, pmask), zero_invalid(logvar, pmask)
    kl = 0.5 * (jnp.expm1(logvar) - logvar + jnp.square(mean))
    per_dim, _ = _per_dim_mean(kl, pmask)
    total = jnp.sum(per_dim)
    # max(a, b) = a + relu(b - a): the exact gradient of the KL above the floor, 0 below.
    loss = total + jnp.sum(jax.nn.relu(free_bits - per_dim))
    return loss, {
        "loss": loss,
        "kl": total,
        "kl_dim_max": jnp.max(per_dim),
        "dims_below_free_bits": jnp.mean((per_dim < free_bits).astype(jnp.float32)),
    }


def gaussian_kl_between(
    mean_q: jax.Array,
    logvar_q: jax.Array,
    mean_p: jax.Array,
    logvar_p: jax.Array,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p)))`` of diagonal Gaussians.

    All four: ``[..., D]`` (broadcastable to a common shape); mask as ``gaussian_kl``.
    Per element ``0.5 * (exp(lq - lp) - 1 - (lq - lp) + (mq - mp)^2 * exp(-lp))``, summed
    over ``D``, averaged over valid positions. Gradients flow into both distributions
    (stop_gradient one side at the call site for a one-sided KL).

    Returns float32 ``(loss, {"loss", "kl"})``.
    """
    args = jnp.broadcast_arrays(
        *(jnp.asarray(a, jnp.float32) for a in (mean_q, logvar_q, mean_p, logvar_p))
    )
    pmask = _position_mask(mask, args[0].shape)
    mq, lq, mp, lp = (zero_invalid(a, pmask) for a in args)
    d = lq - lp
    kl = 0.5 * (jnp.expm1(d) - d + jnp.square(mq - mp) * jnp.exp(-lp))
    per_dim, _ = _per_dim_mean(kl, pmask)
    loss = jnp.sum(per_dim)
    return loss, {"loss": loss, "kl": loss}
