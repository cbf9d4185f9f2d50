"""The train state and a pure, jit-compiled train step shared by every model.

A package supplies only ``loss_fn(model, batch, rng) -> (loss, metrics)``. The step
merges the model from its state (``nnx.merge``), differentiates the loss w.r.t. the
``nnx.Param``s, applies the optax update and returns the new state. It is compiled once
with the state donated and explicit shardings, so the same function runs on one CPU, a
GPU, or a pod slice.

Non-finite guard: when the loss or any gradient is NaN/Inf the update is skipped
(parameters, optimizer and model state keep their old values) and counted; the loop
stops with a clear error after ``max_nonfinite`` such steps in a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import optax
from flax import nnx

LossFn = Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Everything a step reads and writes (a pytree; checkpointed whole).

    params: the model's ``nnx.Param`` state; rest: its other variables (RNG stream
    counters, running statistics); rng: the root key that ``fold_in(rng, step)`` turns
    into each step's key; nonfinite_run / nonfinite_total: skipped-update counters.
    """

    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any
    rng: jax.Array
    nonfinite_run: jax.Array
    nonfinite_total: jax.Array

    @classmethod
    def create(cls, model: nnx.Module, tx: optax.GradientTransformation,
               rng: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        # Distinct zeros: a donated state must not hold one buffer twice.
        zero = lambda: jnp.zeros((), jnp.int32)
        return graphdef, cls(step=zero(), params=params, rest=rest, opt_state=tx.init(params),
                             rng=rng, nonfinite_run=zero(), nonfinite_total=zero())

    def model_state(self) -> nnx.State:
        """Parameters and other variables as one state (what ``load_model`` restores)."""
        return nnx.merge_state(self.params, self.rest)

    def train_items(self) -> dict[str, Any]:
        return dict(step=self.step, opt_state=self.opt_state, rng=self.rng,
                    nonfinite_run=self.nonfinite_run, nonfinite_total=self.nonfinite_total)

    @classmethod
    def from_items(cls, model_state: nnx.State, train: Mapping[str, Any]) -> TrainState:
        params, rest = nnx.split_state(model_state, nnx.Param, ...)
        return cls(params=params, rest=rest, **train)


def split_micro(batch: Any, n: int) -> Any:
    """``[B, ...] -> [n, B/n, ...]`` taking every n-th example, so each device's
    contiguous shard of the batch contributes equally to every micro-batch (no
    cross-device shuffle)."""
    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % n:
            raise ValueError(f"train.grad_accum={n} must divide the batch size, got a batch "
                             f"of {x.shape[0]}")
        return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)
    return jax.tree.map(split, batch)


def apply_gradients(state: TrainState, grads: Any, loss: jax.Array, rest: Any,
                    tx: optax.GradientTransformation, *, enabled: jax.Array | bool = True
                    ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update with the non-finite guard; shared by every kind of step.

    The update (parameters, optimizer state and the model's other variables ``rest``)
    is kept only if the loss and all gradients are finite and ``enabled`` (a GAN's
    discriminator before its start step). The step counter always advances.
    Returns the new state and ``grad_norm``, ``update_norm``, ``skipped`` metrics.
    """
    # One global norm serves the skip test, the metric and the optimizer's clip: a NaN or
    # inf in any gradient makes it non-finite, and so does a norm past float32's range
    # (about 1.8e19 per element), an update no run would want either. Per-leaf
    # isfinite tests and a second norm cost compile time (one kernel per leaf).
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = finite & jnp.asarray(enabled)
    tx = optax.with_extra_args_support(tx)

    # One conditional rather than a jnp.where per leaf: per-leaf selects on a predicate
    # that reduces over every gradient make XLA's CPU compile several times slower
    # (48 s instead of 9 s for the alpha codec), and a skipped update costs nothing.
    def update(_):
        updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                       grad_norm=grad_norm)
        return (optax.apply_updates(state.params, updates), opt_state, rest,
                optax.tree.norm(updates).astype(jnp.float32))

    def skip(_):
        return state.params, state.opt_state, state.rest, jnp.zeros((), jnp.float32)

    params, opt_state, rest, update_norm = jax.lax.cond(keep, update, skip, None)
    new_state = TrainState(
        step=state.step + 1,
        params=params,
        rest=rest,
        opt_state=opt_state,
        rng=state.rng,
        nonfinite_run=jnp.where(finite, 0, state.nonfinite_run + 1),
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32),
    )
    metrics = dict(grad_norm=grad_norm, update_norm=update_norm,
                   skipped=(~finite).astype(jnp.float32))
    return new_state, metrics


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    grad_accum: int = 1,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure step ``(state, batch) -> (state, metrics)``; jit it with ``jit_train_step``.

    ``loss_fn`` gets the merged model, the (micro-)batch and a key derived from
    ``fold_in(state.rng, step)``; it returns a scalar loss and a dict of scalar metrics.
    With ``grad_accum > 1`` the batch is split into micro-batches whose gradients are
    averaged in a ``lax.scan`` (equal to the full-batch gradient when the loss is a
    mean over equally sized micro-batches). Metrics get ``loss``, ``grad_norm``,
    ``update_norm`` and ``skipped`` (1.0 when the update was skipped).
    """
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")

    def loss_of(params, rest, batch, key):
        # copy=True: the model's variables must belong to this trace level, or nnx
        # transforms inside the model (scan over layers) refuse the outer-level state.
        model = nnx.merge(graphdef, params, rest, copy=True)
        loss, metrics = loss_fn(model, batch, key)
        return loss, (dict(metrics), nnx.state(model, nnx.Not(nnx.Param)))

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(state.rng, state.step)
        if grad_accum == 1:
            (loss, (metrics, rest)), grads = grad_fn(state.params, state.rest, batch, key)
        else:
            def body(carry, xs):
                acc, rest = carry
                micro, i = xs
                (loss_i, (m, rest)), g = grad_fn(state.params, rest, micro,
                                                 jax.random.fold_in(key, i))
                return (jax.tree.map(jnp.add, acc, g), rest), (loss_i, m)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, rest), (losses, ms) = jax.lax.scan(
                body, (zeros, state.rest), (split_micro(batch, grad_accum),
                                            jnp.arange(grad_accum)))
            grads = jax.tree.map(lambda g: g / grad_accum, grads)
            loss = jnp.mean(losses)
            metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), ms)

        new_state, update_metrics = apply_gradients(state, grads, loss, rest, tx)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        metrics.update(loss=loss.astype(jnp.float32), **update_metrics)
        return new_state, metrics

    return step


def jit_train_step(step: Callable, state_shardings: Any, batch_sharding: Any) -> Callable:
    """Compile ``step`` with explicit shardings and the state donated (updated in place)."""
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))


def make_eval_step(graphdef: nnx.GraphDef, loss_fn: LossFn) -> Callable:
    """``(state, batch, key) -> metrics`` without updates (model in eval mode)."""
    def evaluate(state: TrainState, batch: Any, key: jax.Array) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, state.params, state.rest, copy=True)
        model.eval()
        loss, metrics = loss_fn(model, batch, key)
        out = {k: jnp.asarray(v, jnp.float32) for k, v in dict(metrics).items()}
        out["loss"] = jnp.asarray(loss, jnp.float32)
        return out
    return evaluate


# The initial state is computed once, so XLA's optimisation passes only cost time: on CPU
# they take ~2/3 of compiling the tiny alpha GAN's init (24 s of it on 2 cores, 7.7 s
# without them). Other backends keep their defaults.
_INIT_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class TracedInit:
    """A program's ``init`` traced once: ``abstract`` is its output as shape structs
    (what ``eval_shape`` gives: for shardings and checkpoint targets), and ``build``
    compiles and runs the same trace. Building the models' Python objects is most of a
    trace (~3 s for the tiny alpha GAN on 2 CPU cores), and ``eval_shape`` followed by
    ``jax.jit(init)`` paid it twice."""

    abstract: Any
    traced: jax.stages.Traced

    def build(self, state_shardings: Any) -> Any:
        """The state, each leaf placed at ``state_shardings``; on CPU compiled without
        backend optimisation (it runs once)."""
        closed, out_tree = self.traced.jaxpr, self.traced.out_tree
        # The shardings are a prefix of the state (one sharding stands for an optax
        # MaskedNode, an empty node), as jax.jit's out_shardings takes them.
        replay = jax.jit(lambda: out_tree.unflatten(jax.extend.core.jaxpr_as_fun(closed)()),
                         out_shardings=state_shardings)
        options = _INIT_CPU_OPTIONS if jax.default_backend() == "cpu" else None
        return replay.lower().compile(compiler_options=options)()


def trace_init(init: Callable[[], Any]) -> TracedInit:
    """Trace ``init()`` once (see ``TracedInit``)."""
    traced = jax.jit(init).trace()
    return TracedInit(traced.out_info, traced)
