"""ScaledAdam and the Eden schedule (icefall / Zipformer) as optax transforms.

Ported from k2-fsa/icefall ``egs/librispeech/ASR/zipformer/optim.py`` (classes
``ScaledAdam`` and ``Eden``, D. Povey; the same code ships with VALL-E X, VoiceStar and
T5Gemma-TTS). The update rule below follows that source line by line; ``step`` is the
number of steps already taken (the source's ``state["step"]``, optax's ``count``).

Per step, with ``lr`` the (scheduled) learning rate and ``beta1, beta2 = betas``:

1. Gradient clipping (``clipping_scale`` not None, ``_get_clipping_scale``). Nothing on
   step 0. From step 1 on, ``norm = sqrt(sum_tensors |g * param_rms|^2 + sum_scalars
   |g * scalar_lr_scale|^2)`` (with the *stored*, not yet refreshed ``param_rms``) is
   written to slot ``step % clipping_update_period`` of a ring of recent norms. On
   steps ``step % clipping_update_period == 0`` and on the early steps 10, 20, 40 (those
   below the period) the threshold is refreshed to ``clipping_scale * median`` (the
   source's median: element ``min(n - 1, (n // 4) * 2)`` of the ``n`` sorted norms,
   ``n = step`` on the early steps, taking the largest ``step`` entries of the ring, else
   the whole ring), doubled on the early steps. Once a threshold exists every gradient
   is scaled by ``min(1, threshold / (norm + 1e-20))``; a NaN factor becomes 0 and
   zeroes the gradients. This is the only clip icefall applies, so
   ``common.train.optim.make_optimizer`` puts no global-norm clip in front of it
   (``OptimizerConfig.clip_norm="auto"``): that would rescale the norms the median
   tracks.
2. ``delta *= beta1`` (``delta`` is the momentum of the whole parameter change).
3. Tensors (numel > 1): ``scale_grads[step % size_update_period] = sum(p * g)``. When
   ``step % size_update_period == size_update_period - 1``: ``param_rms = rms(p)``, and
   if ``step > 0`` the learned-scale update (``_size_update``): ``beta2c =
   beta2 ** size_update_period``, ``scale_exp_avg_sq = beta2c * s + (1 - beta2c) *
   mean(scale_grads^2)``, ``scale_step = -lr * scalar_lr_scale * sqrt(1 - beta2c **
   ((step + 1) // size_update_period)) * sum(scale_grads) / (sqrt(scale_exp_avg_sq) +
   eps)``, zero where ``param_rms < param_min_rms``, at most ``(param_max_rms -
   param_rms) / param_rms``; ``delta += (1 - beta1) * p * scale_step``.
   Then (``_step``): ``exp_avg_sq = beta2 * v + (1 - beta2) * g^2``; with ``bc2 = 1 -
   beta2 ** (step + 1)`` the second moment is divided by ``bc2`` only while
   ``bc2 < 0.99``; ``delta += -lr * (1 - beta1) * max(param_rms, param_min_rms) * g /
   (sqrt(v) + eps)``; ``p += delta``.
4. Scalars (numel == 1, ``_step_scalar``): plain Adam without first-moment bias
   correction at ``lr * scalar_lr_scale``: ``delta += -lr * scalar_lr_scale * (1 -
   beta1) * g / (sqrt(v / bc2) + eps)``; then ``p = clip(p, -scalar_max, scalar_max) +
   delta``.

Deviations from the source, all without effect on the numbers unless stated:

- Per-tensor instead of batched: the source stacks same-shaped tensors and reduces over
  all dims but the stacking one, which is the per-tensor computation done here.
- One parameter group; ``lr`` is a float or an optax schedule of ``step`` (the source
  reads ``group["lr"]`` as set by its scheduler).
- Non-finite gradients (these differ from the source): the source raises "Too many
  grads were not finite" when the median norm is NaN, and its factor ``min(1.0, nan)``
  is Python's 1.0, so a NaN gradient norm passes through unclipped (its ``ans != ans``
  -> 0 branch is unreachable). Under jit nothing can raise; here a NaN factor (NaN norm
  or NaN threshold) is set to 0 and zeroes the gradients of that step, as that branch
  intends. An infinite norm gives factor 0 in both. The train step is expected to catch
  non-finite losses anyway.
- The source's logging (quartiles, percentage clipped, the dominating parameter) is not
  ported; the last clipping factor is kept in the state (``clip_factor``) for metrics.
- State is uniform over leaves: scalar parameters also carry (unused) ``param_rms`` and
  scale statistics, and the norm ring exists even without clipping. The source's unused
  ``zero_step`` hook is dropped.
- Scalars: the source clamps ``p`` in place before adding ``delta``; as an optax update
  this is ``clip(p) - p + delta``, equal up to float rounding.

``eden_schedule`` follows ``Eden`` (batches *and* epochs, warm-up in batches), not
``Eden2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["ScaledAdamState", "eden_schedule", "scaled_adam"]

_IRREGULAR_CLIP_STEPS = (10, 20, 40)  # early threshold estimates in the source


class ScaledAdamState(NamedTuple):
    count: jax.Array  # int32 []: steps taken (the source's state["step"])
    delta: optax.Updates  # like params: momentum of the parameter change
    exp_avg_sq: optax.Updates  # like params
    param_rms: optax.Updates  # [] per leaf, refreshed every size_update_period steps
    scale_exp_avg_sq: optax.Updates  # [] per leaf
    scale_grads: optax.Updates  # [size_update_period] per leaf: sum(p * g) per step
    model_norms: jax.Array  # [clipping_update_period]: recent rms-weighted grad norms
    model_norm_threshold: jax.Array  # []
    has_threshold: jax.Array  # bool []
    clip_factor: jax.Array  # []: factor applied to the last gradients (1 = unclipped)


def _rms(p: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(p)))


def scaled_adam(
    learning_rate: float | optax.Schedule = 0.03,
    betas: tuple[float, float] = (0.9, 0.98),
    scalar_lr_scale: float = 0.1,
    eps: float = 1e-8,
    param_min_rms: float = 1e-5,
    param_max_rms: float = 3.0,
    scalar_max: float = 10.0,
    size_update_period: int = 4,
    clipping_scale: float | None = None,
    clipping_update_period: int = 100,
) -> optax.GradientTransformation:
    """icefall's ScaledAdam (see the module docstring); defaults are the source's.

    Needs ``params`` in ``update``. Works on any pytree of float arrays, including an
    ``nnx.State`` of ``nnx.Param``s and the ``MaskedNode`` trees of ``optax.masked``.
    """
    beta1, beta2 = (float(b) for b in betas)
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"scaled_adam: betas must be in [0, 1), got {betas}")
    if size_update_period < 1 or clipping_update_period < 1:
        raise ValueError("scaled_adam: size_update_period and clipping_update_period must be >= 1")
    if not 0.0 < param_min_rms < param_max_rms:
        raise ValueError(
            f"scaled_adam: need 0 < param_min_rms < param_max_rms, got "
            f"{param_min_rms}, {param_max_rms}"
        )
    irregular = tuple(s for s in _IRREGULAR_CLIP_STEPS if s < clipping_update_period)
    period = clipping_update_period
    beta2_corr = beta2**size_update_period

    def init_fn(params):
        def scalar_zero(p):
            return jnp.zeros((), p.dtype)

        return ScaledAdamState(
            count=jnp.zeros((), jnp.int32),
            delta=jax.tree.map(jnp.zeros_like, params),
            exp_avg_sq=jax.tree.map(jnp.zeros_like, params),
            param_rms=jax.tree.map(lambda p: _rms(p).astype(p.dtype), params),
            scale_exp_avg_sq=jax.tree.map(scalar_zero, params),
            scale_grads=jax.tree.map(lambda p: jnp.zeros((size_update_period,), p.dtype), params),
            model_norms=jnp.zeros((period,), jnp.float32),
            model_norm_threshold=jnp.zeros((), jnp.float32),
            has_threshold=jnp.zeros((), jnp.bool_),
            clip_factor=jnp.ones((), jnp.float32),
        )

    def clip_factor_of(grads, rms_list, state):
        """(factor, model_norms, threshold, has_threshold) per ``_get_clipping_scale``."""
        step = state.count
        if clipping_scale is None:
            one = jnp.ones((), jnp.float32)
            return one, state.model_norms, state.model_norm_threshold, state.has_threshold
        sumsq = jnp.zeros((), jnp.float32)
        for g, rms in zip(grads, rms_list, strict=True):
            g32 = g.astype(jnp.float32)
            if g.size == 1:
                sumsq += jnp.sum(jnp.square(g32)) * scalar_lr_scale**2
            else:
                sumsq += jnp.sum(jnp.square(g32 * rms.astype(jnp.float32)))
        tot_norm = jnp.sqrt(sumsq)
        first = step == 0  # the source returns 1.0 before recording anything
        norms = jnp.where(
            first, state.model_norms, state.model_norms.at[step % period].set(tot_norm)
        )
        is_irregular = jnp.zeros((), jnp.bool_)
        for s in irregular:
            is_irregular |= step == s
        refresh = ~first & ((step % period == 0) | is_irregular)
        # The source sorts the ring and, on the early steps, keeps its top `step` values.
        n = jnp.where(is_irregular, step, period)
        median = jnp.sort(norms)[period - n + jnp.minimum(n - 1, (n // 4) * 2)]
        threshold = clipping_scale * median * jnp.where(is_irregular, 2.0, 1.0)
        threshold = jnp.where(refresh, threshold, state.model_norm_threshold)
        has = state.has_threshold | refresh
        factor = jnp.minimum(1.0, threshold / (tot_norm + 1e-20))
        factor = jnp.where(jnp.isnan(factor), 0.0, factor)
        factor = jnp.where(has & ~first, factor, 1.0)
        return factor, norms, threshold, has

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scaled_adam needs the current params in update(...)")
        step = state.count
        lr = learning_rate(step) if callable(learning_rate) else learning_rate
        stepf = step.astype(jnp.float32)

        g_leaves, treedef = jax.tree.flatten(updates)
        p_leaves = jax.tree.leaves(params)
        fields = ("delta", "exp_avg_sq", "param_rms", "scale_exp_avg_sq", "scale_grads")
        trees = {k: jax.tree.leaves(getattr(state, k)) for k in fields}
        for k, leaves in [("params", p_leaves), *trees.items()]:
            if len(leaves) != len(g_leaves):
                raise ValueError(
                    f"scaled_adam: {k} has {len(leaves)} leaves, updates {len(g_leaves)}"
                )

        factor, norms, threshold, has = clip_factor_of(g_leaves, trees["param_rms"], state)

        # Size refresh, learned-scale update and bias correction depend only on the step.
        slot = step % size_update_period
        refresh_size = slot == size_update_period - 1
        do_size = refresh_size & (step > 0)
        size_step = ((step + 1) // size_update_period).astype(jnp.float32)
        scale_bias_corr = jnp.sqrt(1.0 - beta2_corr**size_step)
        bc2 = 1.0 - beta2 ** (stepf + 1.0)

        out = {k: [] for k in ("update", *fields)}
        for i, (g, p) in enumerate(zip(g_leaves, p_leaves, strict=True)):
            delta, v, rms, s_v, s_g = (trees[k][i] for k in fields)
            g = jnp.where(factor == 0.0, 0.0, g * factor).astype(g.dtype)
            delta = beta1 * delta
            v = beta2 * v + (1.0 - beta2) * jnp.square(g)
            if g.size == 1:  # _step_scalar: plain Adam at lr * scalar_lr_scale
                denom = jnp.sqrt(v / bc2) + eps
                delta = delta - lr * scalar_lr_scale * (1.0 - beta1) * g / denom
                upd = jnp.clip(p, -scalar_max, scalar_max) - p + delta
            else:
                s_g = s_g.at[slot].set(jnp.sum(p * g))
                rms = jnp.where(refresh_size, _rms(p), rms)
                # _size_update: the gradient w.r.t. the log-scale of p, Adam-normalised.
                s_v_new = beta2_corr * s_v + (1.0 - beta2_corr) * jnp.mean(jnp.square(s_g))
                scale_step = (
                    -lr
                    * scalar_lr_scale
                    * scale_bias_corr
                    * jnp.sum(s_g)
                    / (jnp.sqrt(s_v_new) + eps)
                )
                scale_step = jnp.where(rms < param_min_rms, 0.0, scale_step)
                scale_step = jnp.minimum(scale_step, (param_max_rms - rms) / rms)
                delta = jnp.where(do_size, delta + (1.0 - beta1) * p * scale_step, delta)
                s_v = jnp.where(do_size, s_v_new, s_v)
                # _step: the second moment is bias-corrected only while bc2 < 0.99.
                v_hat = jnp.where(bc2 < 0.99, v / bc2, v)
                alpha = -lr * (1.0 - beta1) * jnp.maximum(rms, param_min_rms)
                delta = delta + alpha * g / (jnp.sqrt(v_hat) + eps)
                upd = delta
            for k, x, ref in (
                ("update", upd, p),
                ("delta", delta, delta),
                ("exp_avg_sq", v, v),
                ("param_rms", rms, rms),
                ("scale_exp_avg_sq", s_v, s_v),
                ("scale_grads", s_g, s_g),
            ):
                out[k].append(x.astype(ref.dtype))

        def rebuild(k):
            return jax.tree.unflatten(jax.tree.structure(getattr(state, k)), out[k])

        new_state = ScaledAdamState(
            count=optax.safe_increment(step),
            **{k: rebuild(k) for k in fields},
            model_norms=norms,
            model_norm_threshold=threshold.astype(jnp.float32),
            has_threshold=has,
            clip_factor=jnp.asarray(factor, jnp.float32),
        )
        return jax.tree.unflatten(treedef, out["update"]), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def eden_schedule(
    base_lr: float,
    lr_batches: float = 5000.0,
    lr_epochs: float = 6.0,
    steps_per_epoch: int | None = None,
    warmup_steps: float = 500.0,
    warmup_start: float = 0.5,
) -> Callable[[jax.Array], jax.Array]:
    """icefall's ``Eden``: ``base_lr * ((b^2 + B^2) / B^2)^-0.25 * ((e^2 + E^2) / E^2)^-0.25
    * warmup`` with ``b`` the step, ``warmup = warmup_start + (1 - warmup_start) * b /
    warmup_steps`` for ``b < warmup_steps`` and 1 after (defaults are the source's).

    ``e = step / steps_per_epoch`` (fractional), or 0 (factor 1) when ``steps_per_epoch``
    is None. icefall's recipes set the epoch from outside (the integer epoch index from
    0, or hours of data seen with ``--lr-hours``); a step-based fractional epoch is the
    jit-friendly equivalent of the latter.
    """
    if lr_batches <= 0 or lr_epochs <= 0:
        raise ValueError(
            f"eden_schedule: lr_batches and lr_epochs must be > 0, got {lr_batches}, {lr_epochs}"
        )
    if not 0.0 <= warmup_start <= 1.0:
        raise ValueError(f"eden_schedule: warmup_start must be in [0, 1], got {warmup_start}")
    if steps_per_epoch is not None and steps_per_epoch <= 0:
        raise ValueError(f"eden_schedule: steps_per_epoch must be > 0, got {steps_per_epoch}")

    def schedule(count):
        b = jnp.asarray(count, jnp.float32)
        factor = (1.0 + jnp.square(b / lr_batches)) ** -0.25
        if steps_per_epoch is not None:
            e = b / steps_per_epoch
            factor = factor * (1.0 + jnp.square(e / lr_epochs)) ** -0.25
        ramp = warmup_start + (1.0 - warmup_start) * b / max(float(warmup_steps), 1.0)
        warmup = jnp.where(b >= warmup_steps, 1.0, ramp)
        return base_lr * factor * warmup

    return schedule
