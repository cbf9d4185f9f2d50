"""What the training loop drives: how to build, step, evaluate and checkpoint a state.

The loop (``common.train.loop.train``) knows nothing about the state's structure; a
``Program`` tells it. ``supervised_program`` covers one model and one loss;
``common.train.gan.gan_program`` a generator and a discriminator. A new kind of training
(distillation with a frozen teacher, EMA weights, ...) is a new program, not a new loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from common.train.step import LossFn, TrainState, make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class Program:
    """A training state's life cycle, as pure functions.

    init: ``() -> state``, traced once under ``jax.jit`` with the state's shardings.
    step: ``(state, batch) -> (state, metrics)``, the pure train step.
    evaluate: ``(state, batch, key) -> metrics`` or None.
    to_items / from_items: the state as named checkpoint items and back. The item
      ``"model"`` must hold the state of the model used for inference, so that
      ``checkpoint.load_model`` can restore it alone.
    model: ``state -> nnx.Module``, the model handed to logging hooks.
    nonfinite_run / nonfinite_total: skipped-update counters (``int32 []``) of the state.
    grad_accum: micro-batches per step that ``step`` was built with; the loop refuses a
      program whose value differs from ``TrainConfig.grad_accum`` (an ignored setting
      would silently train with another effective batch).
    warmup_step / warmup_steps: a cheaper step with the same state that the loop runs
      instead of ``step`` for the run's first ``warmup_steps`` steps (the GAN before its
      discriminator starts); each is compiled only when a step needs it.
    """

    init: Callable[[], Any]
    step: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]
    evaluate: Callable[[Any, Any, jax.Array], dict[str, jax.Array]] | None
    to_items: Callable[[Any], dict[str, Any]]
    from_items: Callable[[dict[str, Any]], Any]
    model: Callable[[Any], nnx.Module]
    nonfinite_run: Callable[[Any], jax.Array]
    nonfinite_total: Callable[[Any], jax.Array]
    grad_accum: int = 1
    warmup_step: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]] | None = None
    warmup_steps: int = 0


def supervised_program(
    build_model: Callable[[nnx.Rngs], nnx.Module],
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    seed: int = 0,
    grad_accum: int = 1,
) -> Program:
    """One model, one loss, one optimizer: checkpoint items ``model`` and ``train``."""

    def init() -> TrainState:
        return TrainState.create(build_model(nnx.Rngs(seed)), tx, jax.random.key(seed + 1))[1]

    graphdef = TrainState.create(nnx.eval_shape(lambda: build_model(nnx.Rngs(seed))), tx,
                                 jax.random.key(0))[0]
    return Program(
        init=init,
        step=make_train_step(graphdef, loss_fn, tx, grad_accum=grad_accum),
        evaluate=make_eval_step(graphdef, loss_fn),
        to_items=lambda s: {"model": s.model_state(), "train": s.train_items()},
        from_items=lambda items: TrainState.from_items(items["model"], items["train"]),
        model=lambda s: nnx.merge(graphdef, s.params, s.rest),
        nonfinite_run=lambda s: s.nonfinite_run,
        nonfinite_total=lambda s: s.nonfinite_total,
        grad_accum=grad_accum,
    )
