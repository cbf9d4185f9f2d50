"""Grokfast gradient filters (Lee et al. 2024, arXiv:2405.20233) as optax transforms.

Both amplify the slow (low-frequency) component of the gradient sequence:
``g' = g + lamb * lowpass(g)``. They port ``gradfilter_ema`` and ``gradfilter_ma`` of
the reference code (github.com/ironjr/grokfast, ``grokfast.py``):

- ``grokfast_ema``: the reference initialises its EMA with the *first* gradient, so on
  step 0 ``ema = g`` (not ``(1 - alpha) * g``) and ``g' = (1 + lamb) * g``; afterwards
  ``ema = alpha * ema + (1 - alpha) * g``, ``g' = g + lamb * ema``.
- ``grokfast_ma``: keeps the last ``window`` gradients (the reference's
  ``deque(maxlen=window)``) and, with its default ``warmup=True``, leaves gradients
  unchanged until the buffer is full; from then on ``g' = g + lamb * mean(buffer)``,
  the mean including the current gradient (``filter_type="mean"``).

State lives in the optax state (a step counter, the EMA or a ring buffer), so both are
jit-able. The MA buffer costs ``window`` copies of the parameters, as in the reference.
Place them first in a chain: they filter raw gradients, before clipping and the
optimizer.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["GrokfastEmaState", "GrokfastMaState", "grokfast_ema", "grokfast_ma"]


class GrokfastEmaState(NamedTuple):
    count: jax.Array  # int32 []: gradients seen so far
    ema: optax.Updates  # like the params


class GrokfastMaState(NamedTuple):
    count: jax.Array  # int32 []: gradients seen so far
    buffer: optax.Updates  # per leaf [window, *shape]; slot count % window is next


def grokfast_ema(alpha: float = 0.98, lamb: float = 2.0) -> optax.GradientTransformation:
    """EMA filter: ``ema = alpha * ema + (1 - alpha) * g`` (``ema = g`` on the first
    step, as the reference), ``g' = g + lamb * ema``."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"grokfast_ema: alpha must be in [0, 1), got {alpha}")

    def init_fn(params):
        return GrokfastEmaState(
            count=jnp.zeros((), jnp.int32), ema=jax.tree.map(jnp.zeros_like, params)
        )

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0

        def ema_of(g, m):
            return jnp.where(first, g, alpha * m + (1.0 - alpha) * g).astype(m.dtype)

        ema = jax.tree.map(ema_of, updates, state.ema)
        new = jax.tree.map(lambda g, m: (g + lamb * m).astype(g.dtype), updates, ema)
        return new, GrokfastEmaState(count=optax.safe_increment(state.count), ema=ema)

    return optax.GradientTransformation(init_fn, update_fn)


def grokfast_ma(window: int = 100, lamb: float = 5.0) -> optax.GradientTransformation:
    """Moving-average filter over the last ``window`` gradients: unchanged until
    ``window`` gradients were seen, then ``g' = g + lamb * mean(last window grads)``."""
    if window < 1:
        raise ValueError(f"grokfast_ma: window must be >= 1, got {window}")

    def init_fn(params):
        return GrokfastMaState(
            count=jnp.zeros((), jnp.int32),
            buffer=jax.tree.map(lambda p: jnp.zeros((window, *jnp.shape(p)), p.dtype), params),
        )

    def update_fn(updates, state, params=None):
        del params
        slot = state.count % window
        full = state.count + 1 >= window  # buffer full once this gradient is in

        buffer = jax.tree.map(lambda b, g: b.at[slot].set(g.astype(b.dtype)), state.buffer, updates)

        def filtered(g, b):
            mean = jnp.sum(b, axis=0) / window
            return jnp.where(full, g + lamb * mean, g).astype(g.dtype)

        new = jax.tree.map(filtered, updates, buffer)
        return new, GrokfastMaState(count=optax.safe_increment(state.count), buffer=buffer)

    return optax.GradientTransformation(init_fn, update_fn)
