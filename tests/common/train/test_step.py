import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common.train.mesh import MeshConfig, batch_sharding, make_mesh, state_shardings
from common.train.step import (
    TrainState,
    apply_gradients,
    jit_train_step,
    make_eval_step,
    make_train_step,
    trace_init,
)
from tests.common.train.toy import Toy, ToyConfig, toy_batch, toy_loss
from tests.helpers import assert_close


def _setup(mesh_cfg: MeshConfig, devices=None, *, cfg=ToyConfig(), grad_accum=1, lr=1e-2,
           loss_fn=toy_loss):
    mesh = make_mesh(mesh_cfg, devices)
    tx = optax.adamw(lr, weight_decay=0.01)

    def init():
        return TrainState.create(Toy(cfg, rngs=nnx.Rngs(0)), tx, jax.random.key(1))[1]

    graphdef = TrainState.create(nnx.eval_shape(lambda: Toy(cfg, rngs=nnx.Rngs(0))), tx,
                                 jax.random.key(1))[0]
    shardings = state_shardings(jax.eval_shape(init), mesh)
    state = jax.jit(init, out_shardings=shardings)()
    step = jit_train_step(make_train_step(graphdef, loss_fn, tx, grad_accum=grad_accum),
                          shardings, batch_sharding(mesh))
    return mesh, graphdef, state, step


def _run(mesh_cfg, devices=None, n_steps=3, **kw):
    mesh, _, state, step = _setup(mesh_cfg, devices, **kw)
    losses = []
    for i in range(n_steps):
        batch = jax.device_put(toy_batch(i), batch_sharding(mesh))
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params)


@pytest.fixture(scope="module")
def one_device_run():
    return _run(MeshConfig(data=1), jax.devices()[:1])


# (2, 2, 2) uses every mesh axis at once: the fast check; the others compile steps of their own.
@pytest.mark.parametrize("shape", [(8, 1, 1), (4, 2, 1), (2, 2, 2)])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_sharded_step_equals_one_device(one_device_run, shape):
    losses1, params1 = one_device_run
    losses8, params8 = _run(MeshConfig(*shape))
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params8), jax.tree.leaves(params1), strict=True):
        assert_close(a, b, 1e-5)


def test_parameters_are_sharded_as_the_rules_say():
    _, _, state, _ = _setup(MeshConfig(2, 2, 2))
    q = state.params["body"]["layers"]["attn"]["q_proj"]["kernel"][...]
    # [layers, embed, heads, head_dim] -> (None, fsdp, tensor, None)
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (2, 16, 2, 8)
    # Adam moments follow their parameters (FSDP shards optimizer state too).
    mu = state.opt_state[0].mu["body"]["layers"]["attn"]["q_proj"]["kernel"][...]
    assert mu.sharding.spec == q.sharding.spec


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_step_compiles_once_and_learns():
    chex.clear_trace_counter()
    cfg = ToyConfig(dropout=0.0)
    tx = optax.adam(1e-2)
    graphdef, state = TrainState.create(Toy(cfg, rngs=nnx.Rngs(0)), tx, jax.random.key(0))
    step = jax.jit(chex.assert_max_traces(make_train_step(graphdef, toy_loss, tx), n=1),
                   donate_argnums=(0,))
    losses = []
    for i in range(12):
        state, m = step(state, toy_batch(i % 3))
        losses.append(float(m["loss"]))
    assert int(state.step) == 12
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_same_seed_same_run_and_rng_varies_per_step():
    a, _ = _run(MeshConfig(data=1), jax.devices()[:1], n_steps=2)
    b, _ = _run(MeshConfig(data=1), jax.devices()[:1], n_steps=2)
    assert a == b  # bitwise: determinism from fold_in(root, step)
    key = jax.random.key(3)
    assert not np.array_equal(jax.random.key_data(jax.random.fold_in(key, 0)),
                              jax.random.key_data(jax.random.fold_in(key, 1)))


@pytest.mark.slow
def test_gradient_accumulation_equals_full_batch():
    # No dropout or input noise: those draw different random numbers per micro-batch.
    kw = dict(cfg=ToyConfig(dropout=0.0), loss_fn=functools.partial(toy_loss, noise=0.0))
    full, p_full = _run(MeshConfig(data=1), jax.devices()[:1], n_steps=2, **kw)
    acc, p_acc = _run(MeshConfig(data=1), jax.devices()[:1], n_steps=2, grad_accum=4, **kw)
    # Strided micro-batches (every 4th example) each hold one partly padded example, so
    # the mean of micro-batch means is the full-batch masked mean.
    mask = toy_batch(0)["mask"]
    assert len({mask[i::4].sum() for i in range(4)}) == 1
    for a, b in zip(jax.tree.leaves(p_acc), jax.tree.leaves(p_full), strict=True):
        assert_close(a, b, 1e-5)
    np.testing.assert_allclose(acc, full, rtol=1e-5)


@pytest.mark.slow
def test_nonfinite_updates_are_skipped_and_counted():
    tx = optax.adam(1e-2)
    graphdef, state = TrainState.create(Toy(ToyConfig(), rngs=nnx.Rngs(0)), tx,
                                        jax.random.key(0))
    step = jax.jit(make_train_step(graphdef, toy_loss, tx))
    state, _ = step(state, toy_batch(0))
    before = jax.device_get(state)
    for bad in (np.nan, np.inf):
        batch = dict(toy_batch(1), scale=np.array([bad], np.float32))
        state, m = step(state, batch)
        assert float(m["skipped"]) == 1.0
    after = jax.device_get(state)
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(after.opt_state), jax.tree.leaves(before.opt_state),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(after.nonfinite_run) == 2 and int(after.nonfinite_total) == 2
    assert int(after.step) == 3  # the step counter still advances
    state, m = step(state, toy_batch(2))
    assert float(m["skipped"]) == 0.0 and int(state.nonfinite_run) == 0
    assert int(state.nonfinite_total) == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e20], ids=["nan", "inf", "overflow"])
def test_one_bad_gradient_leaf_skips_the_update(bad):
    """A finite loss with one bad gradient element is skipped: the test is the global
    norm's finiteness, so a gradient whose norm overflows float32 counts as bad too."""
    params = {"a": jnp.ones((3,)), "b": jnp.ones((2, 2))}
    tx = optax.sgd(0.1)
    zero = jnp.zeros((), jnp.int32)
    state = TrainState(step=zero, params=params, rest={}, opt_state=tx.init(params),
                       rng=jax.random.key(0), nonfinite_run=zero, nonfinite_total=zero)
    grads = {"a": jnp.ones((3,)), "b": jnp.ones((2, 2)).at[1, 0].set(bad)}
    new, m = jax.jit(lambda s, g: apply_gradients(s, g, jnp.float32(1.0), {}, tx))(state, grads)
    assert float(m["skipped"]) == 1.0 and int(new.nonfinite_total) == 1
    jax.tree.map(np.testing.assert_array_equal, new.params, params)
    good, m = apply_gradients(state, {"a": grads["a"], "b": jnp.ones((2, 2))},
                              jnp.float32(1.0), {}, tx)
    assert float(m["skipped"]) == 0.0
    assert_close(m["grad_norm"], np.sqrt(7.0))
    np.testing.assert_allclose(good.params["a"], 0.9, rtol=1e-6)


@pytest.mark.parametrize("frozen", [False, True], ids=["adam", "frozen-leaves"])
def test_traced_init_is_eval_shape_and_jit(frozen):
    """One trace gives both the abstract state and the state itself, placed as asked;
    with frozen leaves the optimizer state holds optax MaskedNodes (empty nodes that the
    shardings cover with one entry each)."""
    from common.train.optim import OptimizerConfig, make_optimizer

    tx = (make_optimizer(OptimizerConfig(name="adamw", schedule="constant",
                                         freeze=("final_norm",)))
          if frozen else optax.adam(1e-3))
    init = lambda: TrainState.create(Toy(ToyConfig(), rngs=nnx.Rngs(0)), tx,
                                     jax.random.key(1))[1]
    traced = trace_init(init)
    ref = jax.eval_shape(init)
    assert jax.tree.structure(traced.abstract) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), traced.abstract) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), ref)
    shardings = state_shardings(traced.abstract, make_mesh(MeshConfig(data=1),
                                                           jax.devices()[:1]))
    state = traced.build(shardings)
    want = jax.jit(init)()
    unkey = lambda x: (jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
                       else x)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(unkey(a), unkey(b))
    # the shardings are a prefix of the state (a MaskedNode has one, and no leaves)
    placed = jax.tree.map(lambda sh, sub: all(x.sharding == sh for x in jax.tree.leaves(sub)),
                          shardings, state)
    assert all(jax.tree.leaves(placed))
    # what a resume restores into: the state's structure (MaskedNodes kept), each array
    # with its sharding (a frozen run's resume failed on the MaskedNodes before)
    from common.train.loop import restore_targets

    targets = restore_targets(traced.abstract, shardings)
    assert jax.tree.structure(targets) == jax.tree.structure(traced.abstract)
    for t, x in zip(jax.tree.leaves(targets), jax.tree.leaves(state), strict=True):
        assert (t.shape, t.dtype, t.sharding) == (x.shape, x.dtype, x.sharding)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_bf16_compute_keeps_f32_params_and_eval_step():
    cfg = dataclasses.replace(ToyConfig(), dtype="bfloat16")
    tx = optax.adam(1e-3)
    graphdef, state = TrainState.create(Toy(cfg, rngs=nnx.Rngs(0)), tx, jax.random.key(0))
    state, m = jax.jit(make_train_step(graphdef, toy_loss, tx))(state, toy_batch(0))
    assert np.isfinite(float(m["loss"]))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    ev = jax.jit(make_eval_step(graphdef, toy_loss))(state, toy_batch(1), jax.random.key(0))
    assert set(ev) >= {"loss", "mse"} and np.isfinite(float(ev["loss"]))


def test_model_state_roundtrip():
    tx = optax.sgd(0.1)
    _, state = TrainState.create(Toy(ToyConfig(), rngs=nnx.Rngs(0)), tx, jax.random.key(0))
    back = TrainState.from_items(state.model_state(), state.train_items())
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
