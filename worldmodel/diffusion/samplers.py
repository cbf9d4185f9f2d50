"""Samplers of the latent diffusion objectives, and classifier-free guidance.

A denoiser is any ``model_fn(x_t, t, cond) -> pred``: ``x_t`` ``[B, ...]`` float32, ``t``
``[B]`` float32 in ``[0, 1]`` (``t = 1`` noise, ``t = 0`` data, see ``objectives.py``),
``cond`` whatever the network takes (``None`` when unconditioned), ``pred`` the objective's
target ``[B, ...]``. Every sampler starts from the noise ``x1`` ``[B, ...]`` at ``t = 1``,
walks a uniform grid ``t_i = 1 - i / steps`` down to ``0`` and returns ``x0`` ``[B, ...]``
float32.

The loop over steps is a ``jax.lax.fori_loop``, so the network is traced once whatever the
step count; ``steps`` (at least 1) is a Python int (the loop becomes a scan of that length)
or an int scalar array (a while loop: one compilation serves every step count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from worldmodel.diffusion.objectives import Diffusion, FlowMatching

ModelFn = Callable[[jax.Array, jax.Array, Any], jax.Array]


def _grid_time(i, steps) -> jax.Array:
    """``t_i = (steps - i) / steps``, float32 scalar: exactly 1 at ``i = 0`` and 0 at ``steps``."""
    return (jnp.asarray(steps, jnp.float32) - i) / jnp.asarray(steps, jnp.float32)


def _call(model_fn: ModelFn, x: jax.Array, t: jax.Array, cond) -> jax.Array:
    """The network at the scalar time ``t`` for the whole batch, float32."""
    return jnp.asarray(model_fn(x, jnp.full((x.shape[0],), t, jnp.float32), cond), jnp.float32)


def _require(objective, kind: type, sampler: str, steps) -> None:
    if isinstance(steps, int) and steps < 1:
        raise ValueError(f"{sampler}: steps must be >= 1, got {steps}")
    if not isinstance(objective, kind):
        raise ValueError(
            f"sampler {sampler!r} needs a {kind.__name__} objective, got "
            f"{type(objective).__name__}; valid samplers for it: "
            f"{', '.join(SAMPLERS.get(type(objective), {})) or 'none'}"
        )


def euler(
    model_fn: ModelFn, objective: FlowMatching, x1: jax.Array, steps, cond=None
) -> jax.Array:
    """Euler integration of the flow ODE ``dx/dt = v(x, t)`` from ``t = 1`` to ``0``.

    ``steps`` network evaluations; first order (the error at ``t = 0`` shrinks as ``1/steps``).
    """
    _require(objective, FlowMatching, "euler", steps)

    def step(i, x):
        t, t_next = _grid_time(i, steps), _grid_time(i + 1, steps)
        return x + (t_next - t) * _call(model_fn, x, t, cond)

    return jax.lax.fori_loop(0, steps, step, jnp.asarray(x1, jnp.float32))


def heun(
    model_fn: ModelFn, objective: FlowMatching, x1: jax.Array, steps, cond=None
) -> jax.Array:
    """Heun's second-order integration of ``dx/dt = v(x, t)`` from ``t = 1`` to ``0``.

    Karras et al. 2022 ("Elucidating the design space of diffusion-based generative models"),
    Algorithm 1: an Euler step, then the average of the slopes at both ends of it, except on
    the last step into ``t = 0``, which stays Euler: logit-normal training rarely shows the
    network times near 0, so its velocity there is the least trustworthy, and that one
    first-order step costs a local ``O(1/steps^2)``, the order of the global error anyway.
    ``2 * steps - 1`` network evaluations; the error at ``t = 0`` shrinks as ``1/steps^2``.
    """
    _require(objective, FlowMatching, "heun", steps)

    def step(i, x):
        t, t_next = _grid_time(i, steps), _grid_time(i + 1, steps)
        v = _call(model_fn, x, t, cond)
        x_euler = x + (t_next - t) * v
        v_next = _call(model_fn, x_euler, t_next, cond)
        return x + (t_next - t) * 0.5 * (v + v_next)

    x = jax.lax.fori_loop(0, steps - 1, step, jnp.asarray(x1, jnp.float32))
    t_last = _grid_time(steps - 1, steps)
    return x - t_last * _call(model_fn, x, t_last, cond)


def ddim(
    model_fn: ModelFn,
    objective: Diffusion,
    x1: jax.Array,
    steps,
    cond=None,
    eta: float = 0.0,
    key: jax.Array | None = None,
) -> jax.Array:
    """DDIM (Song et al. 2021, "Denoising diffusion implicit models") on the cosine schedule.

    From ``x_t`` the v-prediction gives ``x0_hat`` and ``eps_hat`` (``Diffusion.denoised``,
    ``noise_from``: no division, so ``t = 1`` is a valid first step) and the step to ``s < t``
    is ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z`` with
    ``c = eta * (sigma_s / sigma_t) * sqrt(1 - alpha_t^2 / alpha_s^2)``, ``z ~ N(0, I)``.
    ``eta = 0`` (a Python float: a static choice) is deterministic, ``key`` unused;
    ``eta = 1`` is DDPM's ancestral sampling and needs ``key`` (step ``i`` draws with
    ``fold_in(key, i)``). ``steps`` network evaluations; the last step returns ``x0_hat``.
    """
    _require(objective, Diffusion, "ddim", steps)
    stochastic = eta != 0.0
    if stochastic and key is None:
        raise ValueError(f"ddim with eta={eta} draws noise: pass key")

    def step(i, x):
        t, s = _grid_time(i, steps), _grid_time(i + 1, steps)
        pred = _call(model_fn, x, t, cond)
        tb = jnp.full((x.shape[0],), t, jnp.float32)
        x0_hat, eps_hat = objective.denoised(x, pred, tb), objective.noise_from(x, pred, tb)
        alpha_t, sigma_t = objective.schedule(t)
        alpha_s, sigma_s = objective.schedule(s)
        if not stochastic:
            return alpha_s * x0_hat + sigma_s * eps_hat
        # sigma_t > 0 and alpha_s > 0 on every step (t > 0, s < 1); the maxima only absorb
        # rounding where alpha_t ~ alpha_s (thousands of steps).
        c2 = eta**2 * (sigma_s / sigma_t) ** 2 * jnp.maximum(1.0 - (alpha_t / alpha_s) ** 2, 0.0)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
        return (alpha_s * x0_hat + jnp.sqrt(jnp.maximum(sigma_s**2 - c2, 0.0)) * eps_hat
                + jnp.sqrt(c2) * z)

    return jax.lax.fori_loop(0, steps, step, jnp.asarray(x1, jnp.float32))


def guided(model_fn: ModelFn, scale: float, null_cond=None) -> ModelFn:
    """Classifier-free guidance (Ho & Salimans 2022) of ``model_fn`` at ``scale``.

    Returns ``guided_fn(x_t, t, cond) = (1 - scale) * uncond + scale * cond_pred``, which is
    ``uncond + scale * (cond_pred - uncond)`` written so that ``scale = 1`` gives exactly the
    conditional prediction and ``scale = 0`` exactly the unconditional one.

    The unconditional prediction is the network under the null condition the researcher
    trained it with (condition dropout):

    - ``null_cond=None``: ``model_fn(x_t, t, None)``, a second call of batch ``B``, for
      networks that drop their conditioning input when given ``None``;
    - otherwise a pytree shaped like ``cond`` (or broadcastable to each leaf: a scalar
      "null class" id ``num_classes``, a zero embedding ``[D]``): one call of batch ``2B`` on
      ``[x_t; x_t]``, ``[t; t]``, ``[cond; null_cond]``, split back. Use this form for a
      class-conditioned denoiser with a learned null class.
    """
    scale = jnp.float32(scale)

    def combine(uncond, cond_pred):
        uncond = jnp.asarray(uncond, jnp.float32)
        return (1.0 - scale) * uncond + scale * jnp.asarray(cond_pred, jnp.float32)

    if null_cond is None:
        return lambda x_t, t, cond: combine(model_fn(x_t, t, None), model_fn(x_t, t, cond))

    def guided_fn(x_t, t, cond):
        if cond is None:
            raise ValueError("guided(..., null_cond=...) needs a condition to guide towards")
        both_cond = jax.tree.map(
            lambda c, n: jnp.concatenate([c, jnp.broadcast_to(jnp.asarray(n, c.dtype), c.shape)]),
            cond, null_cond,
        )
        pred = model_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), both_cond)
        cond_pred, uncond = jnp.split(pred, 2)
        return combine(uncond, cond_pred)

    return guided_fn


# The samplers that apply to each objective; the first is the default.
SAMPLERS: dict[type, dict[str, Callable[..., jax.Array]]] = {
    FlowMatching: {"euler": euler, "heun": heun},
    Diffusion: {"ddim": ddim},
}


def sample(
    objective: FlowMatching | Diffusion,
    model_fn: ModelFn,
    x1: jax.Array,
    steps,
    sampler: str | None = None,
    cond=None,
    **kwargs,
) -> jax.Array:
    """``x0`` ``[B, ...]`` from the noise ``x1`` ``[B, ...]`` with the sampler named ``sampler``.

    ``None`` picks the objective's default (flow: ``"euler"``, diffusion: ``"ddim"``);
    ``kwargs`` go to the sampler (``eta``, ``key`` for DDIM). A sampler that does not apply to
    the objective is a ValueError naming the valid ones.
    """
    valid = SAMPLERS.get(type(objective))
    if valid is None:
        raise ValueError(f"no samplers for objective {type(objective).__name__}")
    name = next(iter(valid)) if sampler is None else sampler
    if name not in valid:
        raise ValueError(
            f"sampler {name!r} does not apply to {type(objective).__name__}; "
            f"valid: {', '.join(valid)}"
        )
    return valid[name](model_fn, objective, x1, steps, cond=cond, **kwargs)
