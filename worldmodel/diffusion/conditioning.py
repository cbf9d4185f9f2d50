"""What the denoisers (UNet, DiT) are conditioned on, and the null condition of
classifier-free guidance (Ho & Salimans 2022).

- Time: ``t`` in [0, 1] enters as sinusoidal features of ``TIME_SCALE * t``
  (``timestep_embedding``), the discrete-step range ``[0, 1000)`` that DDPM, ADM and DiT
  chose these frequencies for: on ``[0, 1]`` the fastest one would turn less than a radian.
- Condition: ``cond`` is None or a dict with ``"class"`` (int ``[B]``, a table with
  ``num_classes`` real rows and one null row) and/or ``"vector"`` (``[B, cond_dim]``: a
  speaker or caption embedding). A missing entry, or ``cond=None``, is the null condition:
  the null class row and the zero vector. The null class has two ids: ``num_classes`` (what
  ``null_condition`` writes, for ``samplers.guided``) and ``NULL_CLASS = -1`` (what
  ``drop_condition`` writes, since it does not know ``num_classes``); ``class_rows`` maps
  both to the null row.

Training drops each example's condition with probability ``p`` (``drop_condition``), so one
network learns the conditional and the unconditional prediction; sampling combines them
(``samplers.guided(model_fn, scale)`` with ``null_cond=None``, or with
``null_condition(cfg)`` for one call of batch 2B: the same guidance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

COND_KEYS = ("class", "vector")
NULL_CLASS = -1  # the class id of the null condition, besides num_classes
TIME_SCALE = 1000.0  # t in [0, 1] -> the [0, 1000) timestep range of the sinusoid

Cond = Mapping[str, jax.Array] | None


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal features of ``TIME_SCALE * t`` (DDPM / ADM / DiT): ``t [B]`` in [0, 1] ->
    ``[B, dim]`` float32, ``[cos, sin]`` of the frequencies ``max_period^(-k / (dim / 2))``.

    Float32 whatever the network's dtype: bf16 would round arguments of up to 1000 rad to
    a few radians.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = TIME_SCALE * jnp.asarray(t, jnp.float32)[:, None] * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def check_condition(cond: Any, num_classes: int, cond_dim: int, who: str) -> dict:
    """``cond`` as a dict (None: ``{}``), after checking its keys against what the network
    takes; ``who`` names the network in the errors."""
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise TypeError(f"{who}: cond must be None or a dict with keys {COND_KEYS}, "
                        f"got {type(cond).__name__}")
    unknown = sorted(set(cond) - set(COND_KEYS))
    if unknown:
        raise ValueError(f"{who}: unknown condition keys {unknown}; valid: {COND_KEYS}")
    if "class" in cond and not num_classes:
        raise ValueError(f"{who}: got a 'class' condition but num_classes=0")
    if "vector" in cond and not cond_dim:
        raise ValueError(f"{who}: got a 'vector' condition but cond_dim=0")
    return dict(cond)


def class_rows(ids: jax.Array, num_classes: int) -> jax.Array:
    """Class ids -> rows of a ``[num_classes + 1, D]`` table (int32, ``ids``' shape).

    ``NULL_CLASS`` and ``num_classes`` take the null row; any other id outside
    ``[0, num_classes]`` is sent past the table, where ``jnp.take`` fills NaN (it would wrap
    a negative id onto a real class): a bad label shows up as a NaN loss instead of hiding.
    """
    ids = jnp.asarray(ids, jnp.int32)
    return jnp.where(ids < 0, jnp.where(ids == NULL_CLASS, num_classes, num_classes + 1), ids)


def null_condition(cfg: Any, batch: int | None = None) -> dict[str, jax.Array]:
    """The null condition of a config with ``num_classes`` and ``cond_dim`` (empty when
    unconditioned): ``{"class": num_classes, "vector": zeros [cond_dim]}``.

    ``batch=None`` gives leaves that broadcast against a batch (a scalar class id, a
    ``[cond_dim]`` zero vector): the ``null_cond`` of ``samplers.guided``. Else
    ``{"class": [batch], "vector": [batch, cond_dim]}``.
    """
    lead = () if batch is None else (batch,)
    null = {}
    if cfg.num_classes:
        null["class"] = jnp.full(lead, cfg.num_classes, jnp.int32)
    if cfg.cond_dim:
        null["vector"] = jnp.zeros((*lead, cfg.cond_dim), jnp.float32)
    return null


def drop_condition(cond: Cond, key: jax.Array, p) -> Cond:
    """Condition dropout for classifier-free guidance training.

    Each example's whole condition (class and vector together, one Bernoulli draw) becomes
    the null one with probability ``p``: its class id ``NULL_CLASS``, its vector zeros, so a
    dropped example sees the whole null condition, as at guidance time. Pure and jittable;
    ``p`` a float or a scalar array (``p = 0`` returns ``cond``'s values, ``p = 1`` all null).
    cond: ``{"class": [B], "vector": [B, D]}`` (either may be absent); None and ``{}`` are
    returned as they are.
    """
    if not cond:
        return cond
    unknown = sorted(set(cond) - set(COND_KEYS))
    if unknown:
        raise ValueError(f"drop_condition: unknown condition keys {unknown}; valid: {COND_KEYS}")
    batches = {k: jnp.shape(v)[:1] for k, v in cond.items()}
    if len(set(batches.values())) != 1 or () in batches.values():
        raise ValueError(f"drop_condition: every entry needs the same batch axis, got "
                         f"leading dims {batches}")
    (batch,) = next(iter(batches.values()))
    drop = jax.random.bernoulli(key, p, (batch,))  # uniform < p: never at 0, always at 1
    out = dict(cond)
    if "class" in cond:
        ids = jnp.asarray(cond["class"])
        out["class"] = jnp.where(drop, NULL_CLASS, ids).astype(ids.dtype)
    if "vector" in cond:
        v = jnp.asarray(cond["vector"])
        out["vector"] = jnp.where(drop[:, None], jnp.zeros_like(v), v)
    return out
