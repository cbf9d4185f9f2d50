"""Gradient reversal (Ganin & Lempitsky 2015) for adversarial feature disentanglement.

Forward it is the identity; backward it multiplies the incoming gradient by
``-lambda_``, so the layers before it learn to *increase* the loss of the classifier
after it (e.g. making codec features speaker-agnostic).

``lambda_`` is an ordinary traced argument, not a static one: a schedule that ramps it
(DANN's ``2 / (1 + exp(-10 p)) - 1``) passes a new value each step without a retrace.
Its own cotangent is zero: reversal strength is a hyper-parameter, not something to learn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


@jax.custom_vjp
def _reverse(x, lambda_):
    return x


def _reverse_fwd(x, lambda_):
    return x, lambda_


def _reverse_bwd(lambda_, g):
    # Scale in the cotangent's own dtype (bf16 stays bf16: the cotangent must match x).
    flipped = jax.tree.map(lambda t: (-lambda_).astype(t.dtype) * t, g)
    return flipped, jnp.zeros_like(lambda_)


_reverse.defvjp(_reverse_fwd, _reverse_bwd)


def gradient_reversal(x, lambda_: float | jax.Array = 1.0):
    """Identity on ``x`` (an array or pytree of arrays); gradient ``-lambda_ * g``.

    Shapes: any; ``lambda_`` a scalar (Python number or traced array).
    """
    return _reverse(x, jnp.asarray(lambda_, jnp.float32))


class GradientReversal(nnx.Module):
    """``gradient_reversal`` with a default strength.

    For a schedule pass ``lambda_`` to the call rather than changing the attribute: the
    attribute is static module metadata, so changing it retraces a jitted step.

    Shapes: ``x [...] -> [...]`` unchanged.
    """

    def __init__(self, lambda_: float = 1.0):
        self.lambda_ = float(lambda_)

    def __call__(self, x: jax.Array, lambda_: float | jax.Array | None = None) -> jax.Array:
        return gradient_reversal(x, self.lambda_ if lambda_ is None else lambda_)
