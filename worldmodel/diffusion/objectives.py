"""Training objectives of latent diffusion: rectified flow matching and v-prediction diffusion.

Both share one continuous-time interface, ``t`` in ``[0, 1]`` with ``t = 0`` the data and
``t = 1`` pure noise, and one linear corruption ``x_t = alpha_t * x0 + sigma_t * eps``:

- ``FlowMatching`` (rectified flow: Liu et al. 2022, "Flow straight and fast"; Esser et al.
  2024, "Scaling rectified flow transformers", SD3): ``alpha_t = 1 - t``, ``sigma_t = t``,
  the network predicts the velocity ``v = eps - x0 = dx_t/dt``; times are logit-normal.
- ``Diffusion`` (Salimans & Ho 2022, "Progressive distillation for fast sampling of diffusion
  models"; the cosine schedule of Nichol & Dhariwal 2021 in continuous time, without their
  offset): ``alpha_t = cos(pi/2 t)``, ``sigma_t = sin(pi/2 t)``, the network predicts
  ``v = alpha_t * eps - sigma_t * x0``; times are uniform.

Shapes: ``x0``, ``noise`` (the ``eps``), ``x_t`` and predictions are ``[B, ...]``; ``t`` is
``[B]`` and broadcasts over the trailing axes. A training step is::

    t = objective.sample_time(k_t, B)
    noise = jax.random.normal(k_n, x0.shape)
    pred = model_fn(objective.corrupt(x0, noise, t), t, cond)
    loss, metrics = objective.loss(pred, x0, noise, t, mask)

Sampling goes through ``denoised`` / ``noise_from`` (``samplers.py``). Everything is float32;
the dataclasses are frozen (hashable), so an objective can be a static argument under jit.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from common.losses.regression import masked_mean, zero_invalid


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _per_example(t: jax.Array, x: jax.Array) -> jax.Array:
    """``t [B]`` -> ``[B, 1, ..., 1]`` against ``x [B, ...]``."""
    t = _f32(t)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class _Objective:
    """What both objectives share: the linear corruption and the masked MSE against the target.

    A subclass defines ``schedule(t) -> (alpha_t, sigma_t)``, ``target``, ``denoised`` and
    ``noise_from``.
    """

    def schedule(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def corrupt(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
        """``x_t = alpha_t x0 + sigma_t noise`` ``[B, ...]``; x0, noise ``[B, ...]``, t ``[B]``."""
        x0, noise = _f32(x0), _f32(noise)
        alpha, sigma = self.schedule(_per_example(t, x0))
        return alpha * x0 + sigma * noise

    def loss(
        self,
        pred: jax.Array,
        x0: jax.Array,
        noise: jax.Array,
        t: jax.Array,
        mask: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean squared error of ``pred`` against ``target(x0, noise, t)`` over valid entries.

        pred, x0, noise: ``[B, ...]`` (pred may be bf16: computed in float32); t: ``[B]``;
        mask: bool/0-1 broadcastable to ``[B, ...]`` (``common.losses.masked_mean``; a
        ``[B, T]`` mask against ``[B, T, C]`` latents is ``mask[..., None]``). Padding may
        hold anything, NaN included: it is zeroed before the arithmetic so its gradient is 0.

        Returns float32 ``(loss, metrics)``: ``loss`` (the MSE, no 1/2 factor) and ``x0_mse``,
        the MSE of ``denoised(x_t, pred, t)`` against ``x0``: the same error in data units,
        comparable between objectives (not what is optimised).
        """
        pred, x0, noise = (zero_invalid(a, mask) for a in (pred, x0, noise))
        loss = masked_mean(jnp.square(pred - self.target(x0, noise, t)), mask)
        x0_hat = self.denoised(self.corrupt(x0, noise, t), pred, t)
        x0_mse = masked_mean(jnp.square(x0_hat - x0), mask)
        return loss, {"loss": loss, "x0_mse": x0_mse}


@dataclasses.dataclass(frozen=True)
class FlowMatching(_Objective):
    """Rectified flow: ``x_t = (1 - t) x0 + t eps``, the network predicts ``v = eps - x0``.

    The sampling ODE is ``dx/dt = v`` from ``t = 1`` (noise) to ``t = 0`` (data).
    ``sample_time`` is logit-normal, ``t = sigmoid(logit_mean + logit_std * N(0, 1))``
    (SD3's defaults 0 and 1): it spends the training on the middle times, where predicting
    the velocity is hardest, instead of on the nearly trivial ends.
    """

    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self):
        if not self.logit_std >= 0:
            raise ValueError(f"FlowMatching.logit_std must be >= 0, got {self.logit_std}")

    def schedule(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(alpha_t, sigma_t) = (1 - t, t)``, float32, shaped as ``t``."""
        t = _f32(t)
        return 1.0 - t, t

    def sample_time(self, key: jax.Array, batch: int) -> jax.Array:
        """Logit-normal training times ``[batch]`` in ``(0, 1)``, float32."""
        z = jax.random.normal(key, (batch,), jnp.float32)
        return jax.nn.sigmoid(self.logit_mean + self.logit_std * z)

    def target(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
        """The velocity ``eps - x0`` ``[B, ...]`` (independent of ``t``)."""
        del t
        return _f32(noise) - _f32(x0)

    def denoised(self, x_t: jax.Array, pred: jax.Array, t: jax.Array) -> jax.Array:
        """``x0_hat = x_t - t * v`` ``[B, ...]`` (exact at every t, no division)."""
        return _f32(x_t) - _per_example(t, x_t) * _f32(pred)

    def noise_from(self, x_t: jax.Array, pred: jax.Array, t: jax.Array) -> jax.Array:
        """``eps_hat = x_t + (1 - t) * v`` ``[B, ...]``."""
        return _f32(x_t) + (1.0 - _per_example(t, x_t)) * _f32(pred)


@dataclasses.dataclass(frozen=True)
class Diffusion(_Objective):
    """Variance-preserving diffusion on the continuous cosine schedule, v-prediction.

    ``alpha_t = cos(pi/2 t)``, ``sigma_t = sin(pi/2 t)``, ``x_t = alpha_t x0 + sigma_t eps``,
    the network predicts ``v = alpha_t eps - sigma_t x0``; ``sample_time`` is uniform.

    No clipping at ``t = 1``: since ``alpha^2 + sigma^2 = 1``, ``x0 = alpha x_t - sigma v``
    and ``eps = sigma x_t + alpha v`` hold without a division, so ``t = 1`` (pure noise,
    target ``-x0``) is as well-posed as any other time; this is why v-prediction is used
    rather than eps-prediction, whose ``x0 = (x_t - sigma eps) / alpha`` blows up there
    (eps-prediction is left out for that reason: it would need a ``t_max < 1`` in training
    and sampling). ``alpha_t`` is computed as ``sin(pi/2 (1 - t))`` so that both ends are
    exact in float32 (``cos(float32(pi/2))`` is ``-4.4e-8``, a negative signal weight).
    """

    def schedule(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(alpha_t, sigma_t) = (cos(pi/2 t), sin(pi/2 t))``, float32, shaped as ``t``."""
        t = _f32(t)
        half_pi = math.pi / 2
        return jnp.sin(half_pi * (1.0 - t)), jnp.sin(half_pi * t)

    def sample_time(self, key: jax.Array, batch: int) -> jax.Array:
        """Uniform training times ``[batch]`` in ``[0, 1)``, float32."""
        return jax.random.uniform(key, (batch,), jnp.float32)

    def target(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
        """``v = alpha_t eps - sigma_t x0`` ``[B, ...]``."""
        x0, noise = _f32(x0), _f32(noise)
        alpha, sigma = self.schedule(_per_example(t, x0))
        return alpha * noise - sigma * x0

    def denoised(self, x_t: jax.Array, pred: jax.Array, t: jax.Array) -> jax.Array:
        """``x0_hat = alpha_t x_t - sigma_t v`` ``[B, ...]``."""
        x_t = _f32(x_t)
        alpha, sigma = self.schedule(_per_example(t, x_t))
        return alpha * x_t - sigma * _f32(pred)

    def noise_from(self, x_t: jax.Array, pred: jax.Array, t: jax.Array) -> jax.Array:
        """``eps_hat = sigma_t x_t + alpha_t v`` ``[B, ...]``."""
        x_t = _f32(x_t)
        alpha, sigma = self.schedule(_per_example(t, x_t))
        return sigma * x_t + alpha * _f32(pred)


Objective = FlowMatching | Diffusion

# The config string -> the objective class.
OBJECTIVES: dict[str, type[FlowMatching] | type[Diffusion]] = {
    "flow": FlowMatching,
    "diffusion": Diffusion,
}


def make_objective(name: str, **kwargs) -> Objective:
    """The objective named ``name`` (``"flow"`` or ``"diffusion"``) built with ``kwargs``."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name](**kwargs)
