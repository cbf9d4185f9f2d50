"""The training program of latent diffusion over a frozen upstream model.

A latent diffusion trainee holds the upstream autoencoder (an image VAE, an audio CVAE
with its encoders) as the attribute ``upstream``, the denoiser, and the per-channel
latent statistics ``latent_mean`` / ``latent_std`` (``nnx.Variable [Z]``).
``frozen_upstream_program`` loads the upstream's trained state into it, measures the
statistics once with ``stats_fn`` on a probe, and freezes the upstream (the optimizer
leaves ``^<upstream>/`` out); the state, statistics included, is checkpointed whole,
so a diffusion run alone rebuilds everything sampling needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.train.configs import TrainConfig
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from common.train.step import LossFn


def frozen_upstream_program(
    build_trainee: Callable[[nnx.Rngs], nnx.Module],
    upstream: str,
    state: nnx.State,
    stats_fn: Callable[[nnx.Module], tuple[np.ndarray, np.ndarray]],
    loss_fn: LossFn,
    train: TrainConfig,
) -> Program:
    """The supervised program of a trainee whose ``upstream`` submodule takes ``state``
    and stays frozen; ``stats_fn(probe) -> (mean [Z], std [Z])`` is called once on a
    trainee holding the upstream's weights."""
    probe = build_trainee(nnx.Rngs(0))
    nnx.update(getattr(probe, upstream), state)
    mean, std = (jnp.asarray(v, jnp.float32) for v in stats_fn(probe))

    def build(rngs: nnx.Rngs) -> nnx.Module:
        model = build_trainee(rngs)
        nnx.update(getattr(model, upstream), state)
        model.latent_mean[...] = mean
        model.latent_std[...] = std
        return model

    optim = resolve_optim(train)
    frozen = rf"^{upstream}/"
    tx = make_optimizer(dataclasses.replace(optim, freeze=(*optim.freeze, frozen)))
    return supervised_program(build, loss_fn, tx, seed=train.seed,
                              grad_accum=train.grad_accum)
