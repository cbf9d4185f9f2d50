"""Element-wise regression losses (L1, L2) and the masked mean every loss here reduces with.

Masks are bool (or 0/1) arrays broadcastable to the values: masked-out entries contribute
nothing, whatever they hold (even NaN or inf: they are selected away, not multiplied by 0),
and the mean is over the valid entries only, ``sum / max(count, 1)``; their gradient is 0
(``zero_invalid`` the inputs so that it is not NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def abs_sign_grad(x: jax.Array) -> jax.Array:
    """``|x|`` whose gradient is ``sign(x)``: 0 at ``x == 0`` (as torch), not jax's 1.

    L1 losses sit at 0 when a prediction is exact; a zero subgradient there keeps an
    exact prediction still instead of pushing every entry the same way.
    """
    return x * jax.lax.stop_gradient(jnp.sign(x))


def masked_sum_count(x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(sum of valid entries, number of valid entries)`` of ``x``, both float32 scalars.

    x: any shape; mask: bool or 0/1, broadcastable to ``x.shape`` (None: all valid).
    """
    x = jnp.asarray(x, jnp.float32)
    if mask is None:
        return jnp.sum(x), jnp.asarray(x.size, jnp.float32)
    valid = jnp.broadcast_to(jnp.asarray(mask) != 0, x.shape)
    return jnp.sum(jnp.where(valid, x, 0.0)), jnp.sum(valid, dtype=jnp.float32)


def zero_invalid(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``x`` (float32) with the entries outside ``mask`` set to 0.

    Apply it to a loss's *inputs* where padding may hold NaN or inf: a ``where`` routes a
    zero cotangent to them, whereas masking only the final values would multiply the
    zero cotangent by a NaN derivative.
    """
    x = jnp.asarray(x, jnp.float32)
    if mask is None:
        return x
    return jnp.where(jnp.broadcast_to(jnp.asarray(mask) != 0, x.shape), x, 0.0)


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of the valid entries of ``x``, float32 scalar (0 when nothing is valid)."""
    total, count = masked_sum_count(x, mask)
    return total / jnp.maximum(count, 1.0)


def l1_loss(
    pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean absolute error over valid entries.

    pred, target: same (or broadcastable) shapes ``[...]``, any float dtype (computed in
    float32); mask: bool/0-1 broadcastable to the broadcast shape. Returns
    ``(loss, {"l1": loss})``, float32 scalars. The gradient at ``pred == target`` is 0
    (see ``abs_sign_grad``).
    """
    diff = zero_invalid(jnp.asarray(pred, jnp.float32) - jnp.asarray(target, jnp.float32), mask)
    loss = masked_mean(abs_sign_grad(diff), mask)
    return loss, {"l1": loss}


def l2_loss(
    pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean squared error over valid entries (no 1/2 factor, no square root).

    Shapes and masking as ``l1_loss``. Returns ``(loss, {"l2": loss})``.
    """
    diff = zero_invalid(jnp.asarray(pred, jnp.float32) - jnp.asarray(target, jnp.float32), mask)
    loss = masked_mean(jnp.square(diff), mask)
    return loss, {"l2": loss}
