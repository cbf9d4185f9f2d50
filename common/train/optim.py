"""Optimizer and learning-rate schedule from one config, as optax transforms.

``make_optimizer(cfg)`` builds, outermost first::

    multi_transform(freeze)            # only if cfg.freeze: frozen leaves -> zero, no state
      chain(grokfast?,                 # filter raw gradients (common.train.grokfast)
            clip_by_global_norm?,      # cfg.global_clip_norm (none for ScaledAdam); takes
                                       # the step's gradient norm as ``grad_norm=``
            adamw | adam | sgd | scaled_adam(make_schedule(cfg)))

Everything works on any pytree of arrays, in particular the ``nnx.State`` of
``nnx.Param``s the train step passes (its leaves sit inside ``nnx.Variable`` nodes).
Parameters are named by their "/"-joined path (``path_to_str``): ``encoder/layers/0/
attn/kernel``. Gradient accumulation is not done here (the train step scans over
micro-batches).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from common.train.configs import OptimizerConfig, fail_optimizer
from common.train.grokfast import grokfast_ema, grokfast_ma
from common.train.scaled_adam import eden_schedule, scaled_adam
from common.train.tree import path_to_str

__all__ = [
    "FROZEN",
    "TRAINABLE",
    "OptimizerConfig",
    "clip_by_global_norm",
    "make_optimizer",
    "make_schedule",
    "param_path_labels",
    "param_paths",
    "path_to_str",
]

FROZEN = "frozen"
TRAINABLE = "trainable"

# ------------------------------------------------------------------ schedules


def make_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """The learning rate as a function of the step (optax count, from 0)."""
    if cfg.schedule == "eden":
        return eden_schedule(
            cfg.lr,
            lr_batches=cfg.eden_lr_batches,
            lr_epochs=cfg.eden_lr_epochs,
            steps_per_epoch=cfg.eden_steps_per_epoch,
            warmup_steps=cfg.warmup_steps,
            warmup_start=cfg.eden_warmup_start,
        )
    if cfg.schedule in ("cosine", "linear") and cfg.total_steps is None:
        fail_optimizer("total_steps", None,
                       f"set (an int > warmup_steps) for schedule={cfg.schedule!r}")
    lr, warmup, end_ratio = cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio
    decay_steps = None if cfg.total_steps is None else cfg.total_steps - warmup
    kind = cfg.schedule

    def schedule(count):
        step = jnp.asarray(count, jnp.float32)
        ramp = step / warmup if warmup > 0 else jnp.ones_like(step)
        if kind == "constant":
            decay = jnp.ones_like(step)
        else:
            frac = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
            shape = 1.0 - frac if kind == "linear" else 0.5 * (1.0 + jnp.cos(math.pi * frac))
            decay = end_ratio + (1.0 - end_ratio) * shape
        return lr * jnp.where(step < warmup, ramp, decay)

    return schedule


# ------------------------------------------------------------------ parameter paths


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def param_paths(params: Any) -> list[str]:
    """The "/"-joined path of every parameter (every ``nnx.Variable`` or array leaf)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_variable)
    return [path_to_str(p) for p, _ in flat]


def param_path_labels(
    params: Any,
    patterns: Mapping[str, str | Sequence[str]],
    default: str = TRAINABLE,
    *,
    require_match: bool = True,
) -> Any:
    """A tree like ``params`` with a string label per leaf, for ``optax.multi_transform``.

    ``patterns`` maps label -> regular expression(s), tried with ``re.search`` on the
    leaf's path in mapping order; the first match wins, else ``default``. With
    ``require_match`` a pattern that matches no parameter raises (a typo would otherwise
    silently train everything). ``nnx.Variable`` leaves keep their node: each of their
    arrays gets the Variable's label.
    """
    compiled = [
        (label, re.compile(p))
        for label, ps in patterns.items()
        for p in ((ps,) if isinstance(ps, str) else ps)
    ]
    used: set[str] = set()

    def label_of(path, leaf):
        name = path_to_str(path)
        label = default
        for lab, rx in compiled:
            if rx.search(name):
                label = lab
                used.add(rx.pattern)
                break
        return jax.tree.map(lambda _: label, leaf) if _is_variable(leaf) else label

    labels = jax.tree_util.tree_map_with_path(label_of, params, is_leaf=_is_variable)
    missing = [rx.pattern for _, rx in compiled if rx.pattern not in used]
    if require_match and missing:
        raise ValueError(
            f"patterns {missing} match no parameter; paths look like {param_paths(params)[:5]}"
        )
    return labels


def _decay_mask(params: Any) -> Any:
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


# ------------------------------------------------------------------ optimizer


def _base_optimizer(cfg: OptimizerConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    mask = None if cfg.decay_1d else _decay_mask
    if cfg.name == "adamw":
        return optax.adamw(
            lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=mask
        )
    if cfg.name == "adam":
        return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.name == "sgd":
        sgd = optax.sgd(lr, momentum=cfg.sgd_momentum or None)
        if cfg.weight_decay == 0:
            return sgd
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask), sgd)
    return scaled_adam(
        lr,
        betas=cfg.scaled_adam_betas,
        scalar_lr_scale=cfg.scalar_lr_scale,
        eps=cfg.eps,
        param_min_rms=cfg.param_min_rms,
        param_max_rms=cfg.param_max_rms,
        scalar_max=cfg.scalar_max,
        size_update_period=cfg.size_update_period,
        clipping_scale=cfg.clipping_scale,
        clipping_update_period=cfg.clipping_update_period,
    )


def clip_by_global_norm(max_norm: float, *, given_norm: bool = True
                        ) -> optax.GradientTransformationExtraArgs:
    """``optax.clip_by_global_norm`` (same arithmetic) that takes the gradients' global
    norm from the caller as the extra argument ``grad_norm`` when ``given_norm``.

    The train step computes that norm once for its skip test, its metric and this clip:
    a norm over hundreds of parameter leaves compiles to one of the largest kernels of
    the step on XLA's CPU backend (three of them were a tenth of the alpha codec's
    code). Without ``grad_norm`` (or with ``given_norm=False``: inside a freeze, where
    the norm must cover the trainable leaves only) it computes the norm itself.
    """
    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None, *, grad_norm=None, **extra_args):
        del params, extra_args
        norm = grad_norm if given_norm and grad_norm is not None else optax.tree.norm(updates)
        trigger = jnp.squeeze(norm < max_norm)
        clip = lambda t: jax.lax.select(trigger, t, (t / norm.astype(t.dtype)) * max_norm)
        return jax.tree.map(clip, updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The full gradient transformation for ``cfg`` (see the module docstring).

    ``update`` needs ``params`` (AdamW's decay, ScaledAdam) and takes the gradients'
    global norm as ``grad_norm=`` (the clip uses it instead of computing its own). The
    learning rate follows ``make_schedule(cfg)`` of the optimizer's own step count.
    """
    parts = []
    if cfg.grokfast == "ema":
        parts.append(grokfast_ema(cfg.grokfast_alpha, cfg.grokfast_lamb))
    elif cfg.grokfast == "ma":
        parts.append(grokfast_ma(cfg.grokfast_window, cfg.grokfast_lamb))
    if cfg.global_clip_norm is not None:
        parts.append(clip_by_global_norm(cfg.global_clip_norm, given_norm=not cfg.freeze))
    parts.append(_base_optimizer(cfg, make_schedule(cfg)))
    tx = optax.chain(*parts)
    if not cfg.freeze:
        return tx
    freeze = cfg.freeze
    return optax.multi_transform(
        {TRAINABLE: tx, FROZEN: optax.set_to_zero()},
        lambda tree: param_path_labels(tree, {FROZEN: freeze}, default=TRAINABLE),
    )
