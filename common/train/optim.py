"""Optimizer and learning-rate schedule from one config, as optax transforms.

``make_optimizer(cfg)`` builds, outermost first::

    multi_transform(freeze)            # only if cfg.freeze: frozen leaves -> zero, no state
      chain(grokfast?,                 # filter raw gradients (common.train.grokfast)
            clip_by_global_norm?,      # cfg.clip_norm
            adamw | adam | sgd | scaled_adam(make_schedule(cfg)))

Everything works on any pytree of arrays, in particular the ``nnx.State`` of
``nnx.Param``s the train step passes (its leaves sit inside ``nnx.Variable`` nodes).
Parameters are named by their "/"-joined path (``path_to_str``): ``encoder/layers/0/
attn/kernel``. Gradient accumulation is not done here (the train step scans over
micro-batches).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from common.train.grokfast import grokfast_ema, grokfast_ma
from common.train.scaled_adam import eden_schedule, scaled_adam
from common.train.tree import path_to_str

__all__ = [
    "FROZEN",
    "TRAINABLE",
    "OptimizerConfig",
    "make_optimizer",
    "make_schedule",
    "param_path_labels",
    "param_paths",
    "path_to_str",
]

FROZEN = "frozen"
TRAINABLE = "trainable"

OptimizerName = Literal["adamw", "adam", "sgd", "scaled_adam"]
ScheduleName = Literal["constant", "cosine", "linear", "eden"]
GrokfastName = Literal["none", "ema", "ma"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer, schedule, clipping, Grokfast filter and frozen parameters.

    Schedules (step = optax count, from 0): ``constant``, ``cosine`` and ``linear`` warm
    up linearly from 0 to ``lr`` over ``warmup_steps``; cosine/linear then decay to
    ``lr * min_lr_ratio`` at ``total_steps`` (required for them, checked by
    ``make_schedule`` so a run config can fill it in late) and stay there. ``eden`` is
    icefall's Eden: its warm-up goes from ``eden_warmup_start * lr`` to ``lr`` over
    ``warmup_steps``.

    ``weight_decay`` is decoupled (AdamW; ``lr * wd * p``, as PyTorch) for ``adamw`` and
    added to the gradient for ``sgd``; by default it skips parameters with fewer than 2
    dims (norm scales, biases, scalars), ``decay_1d=True`` decays them too. ``adam`` and
    ``scaled_adam`` take no weight decay (ScaledAdam learns parameter scales instead).

    ``clip_norm`` clips the global gradient norm before the optimizer, for every
    optimizer; ScaledAdam also clips by its own rule (``clipping_scale`` times the median
    recent norm), so with it one usually sets ``clip_norm=None``.

    ``freeze``: regular expressions, ``re.search``-ed against "/"-joined parameter paths
    (e.g. ``"encoder/.*"``); matching parameters get zero updates and no optimizer
    state. A pattern that matches nothing is an error.
    """

    name: OptimizerName = "adamw"
    """Which optimizer: adamw, adam, sgd or scaled_adam (icefall's ScaledAdam)."""
    lr: float = 3e-4
    """Peak learning rate."""
    schedule: ScheduleName = "cosine"
    """Learning-rate schedule: constant, cosine, linear (all with linear warm-up) or eden."""
    warmup_steps: int = 0
    """Steps of warm-up (from 0 to lr; for eden from eden_warmup_start * lr)."""
    total_steps: int | None = None
    """Step at which cosine/linear reach lr * min_lr_ratio (None: the run fills it in)."""
    min_lr_ratio: float = 0.0
    """Final learning rate of cosine/linear as a fraction of lr."""
    b1: float = 0.9
    """Adam's first-moment decay."""
    b2: float = 0.999
    """Adam's second-moment decay."""
    eps: float = 1e-8
    """Adam's denominator epsilon (also ScaledAdam's)."""
    weight_decay: float = 0.0
    """Decoupled weight decay for adamw, added to the gradient for sgd."""
    decay_1d: bool = False
    """Also decay parameters with fewer than 2 dims (norm scales, biases)."""
    sgd_momentum: float = 0.0
    """Heavy-ball momentum of sgd (0: none)."""
    clip_norm: float | None = 1.0
    """Clip the global gradient norm to this before the optimizer (None: no clipping)."""
    grokfast: GrokfastName = "none"
    """Grokfast gradient filter: none, ema or ma (moving average over a window)."""
    grokfast_alpha: float = 0.98
    """Decay of Grokfast's gradient EMA."""
    grokfast_lamb: float = 2.0
    """Weight of the filtered (slow) gradient added to the gradient."""
    grokfast_window: int = 100
    """Gradients averaged by Grokfast's ma filter."""
    freeze: tuple[str, ...] = ()
    """Regexes on '/'-joined parameter paths that get no updates and no optimizer state."""
    # Eden (icefall) schedule
    eden_lr_batches: float = 5000.0
    """Eden's step constant B: the rate falls as ((b^2 + B^2) / B^2)^-0.25."""
    eden_lr_epochs: float = 6.0
    """Eden's epoch constant E: the rate falls as ((e^2 + E^2) / E^2)^-0.25."""
    eden_steps_per_epoch: int | None = None
    """Steps per Eden epoch (fractional epochs; None: no epoch factor)."""
    eden_warmup_start: float = 0.5
    """Eden's warm-up starts at this fraction of lr."""
    # ScaledAdam (icefall)
    scalar_lr_scale: float = 0.1
    """ScaledAdam: learning-rate factor for scalars and for the learned scales."""
    param_min_rms: float = 1e-5
    """ScaledAdam: parameter RMS floor of the update size and the scale learning."""
    param_max_rms: float = 3.0
    """ScaledAdam: parameter RMS above which the learned scale stops growing."""
    scalar_max: float = 10.0
    """ScaledAdam: scalar parameters are clipped to [-scalar_max, scalar_max]."""
    clipping_scale: float | None = 2.0
    """ScaledAdam: clip gradients at this times the median recent norm (None: off)."""
    clipping_update_period: int = 100
    """ScaledAdam: steps between refreshes of the clipping threshold."""
    size_update_period: int = 4
    """ScaledAdam: steps between updates of the learned parameter scales."""
    scaled_adam_betas: tuple[float, float] = (0.9, 0.98)
    """ScaledAdam's (beta1, beta2)."""

    def __post_init__(self):
        # Files and the CLI may hand over lists, or a lone pattern as a string.
        if isinstance(self.freeze, str):
            object.__setattr__(self, "freeze", (self.freeze,))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "scaled_adam_betas", tuple(self.scaled_adam_betas))

        hints = typing.get_type_hints(type(self))
        for name in ("name", "schedule", "grokfast"):
            allowed = typing.get_args(hints[name])
            if getattr(self, name) not in allowed:
                _fail(name, getattr(self, name), f"one of {list(allowed)}")

        _check(self, "lr", self.lr > 0, "> 0")
        _check(self, "warmup_steps", self.warmup_steps >= 0, ">= 0")
        if self.total_steps is not None:
            _check(
                self,
                "total_steps",
                self.total_steps > self.warmup_steps,
                f"> warmup_steps ({self.warmup_steps})",
            )
        _check(self, "min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]")
        _check(self, "b1", 0.0 <= self.b1 < 1.0, "in [0, 1)")
        _check(self, "b2", 0.0 <= self.b2 < 1.0, "in [0, 1)")
        _check(self, "eps", self.eps > 0, "> 0")
        _check(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        if self.weight_decay > 0 and self.name not in ("adamw", "sgd"):
            _fail(
                "weight_decay",
                self.weight_decay,
                f"0 with name={self.name!r} (decay needs name 'adamw' or 'sgd')",
            )
        _check(self, "sgd_momentum", 0.0 <= self.sgd_momentum < 1.0, "in [0, 1)")
        if self.clip_norm is not None:
            _check(self, "clip_norm", self.clip_norm > 0, "> 0 or None")
        _check(self, "grokfast_alpha", 0.0 <= self.grokfast_alpha < 1.0, "in [0, 1)")
        _check(self, "grokfast_window", self.grokfast_window >= 1, ">= 1")
        for pattern in self.freeze:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as e:
                _fail("freeze", pattern, f"valid regular expressions ({e})")
        _check(self, "eden_lr_batches", self.eden_lr_batches > 0, "> 0")
        _check(self, "eden_lr_epochs", self.eden_lr_epochs > 0, "> 0")
        if self.eden_steps_per_epoch is not None:
            _check(self, "eden_steps_per_epoch", self.eden_steps_per_epoch > 0, "> 0 or None")
        _check(self, "eden_warmup_start", 0.0 <= self.eden_warmup_start <= 1.0, "in [0, 1]")
        _check(self, "scalar_lr_scale", self.scalar_lr_scale > 0, "> 0")
        _check(self, "param_min_rms", self.param_min_rms > 0, "> 0")
        _check(
            self,
            "param_max_rms",
            self.param_max_rms > self.param_min_rms,
            f"> param_min_rms ({self.param_min_rms})",
        )
        _check(self, "scalar_max", self.scalar_max > 0, "> 0")
        if self.clipping_scale is not None:
            _check(self, "clipping_scale", self.clipping_scale > 0, "> 0 or None")
        _check(self, "clipping_update_period", self.clipping_update_period >= 1, ">= 1")
        _check(self, "size_update_period", self.size_update_period >= 1, ">= 1")
        betas = self.scaled_adam_betas
        _check(
            self,
            "scaled_adam_betas",
            len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas),
            "two values in [0, 1)",
        )


def _fail(field: str, value: Any, allowed: str):
    raise ValueError(f"OptimizerConfig.{field} must be {allowed}, got {value!r}")


def _check(cfg: OptimizerConfig, field: str, ok: bool, allowed: str) -> None:
    if not ok:
        _fail(field, getattr(cfg, field), allowed)


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
        _fail("total_steps", None, f"set (an int > warmup_steps) for schedule={cfg.schedule!r}")
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


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The full gradient transformation for ``cfg`` (see the module docstring).

    ``update`` needs ``params`` (AdamW's decay, ScaledAdam). The learning rate follows
    ``make_schedule(cfg)`` of the optimizer's own step count.
    """
    parts = []
    if cfg.grokfast == "ema":
        parts.append(grokfast_ema(cfg.grokfast_alpha, cfg.grokfast_lamb))
    elif cfg.grokfast == "ma":
        parts.append(grokfast_ma(cfg.grokfast_window, cfg.grokfast_lamb))
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(_base_optimizer(cfg, make_schedule(cfg)))
    tx = optax.chain(*parts)
    if not cfg.freeze:
        return tx
    freeze = cfg.freeze
    return optax.multi_transform(
        {TRAINABLE: tx, FROZEN: optax.set_to_zero()},
        lambda tree: param_path_labels(tree, {FROZEN: freeze}, default=TRAINABLE),
    )
