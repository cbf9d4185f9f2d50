"""OptimizerConfig, schedules, make_optimizer (AdamW, clipping, freezing, Grokfast),
parameter paths, and the optimizer on an ``nnx.State`` end to end."""

from __future__ import annotations

import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

from common.nn import axes
from common.train.mesh import MeshConfig, make_mesh, state_shardings
from common.train.optim import (
    FROZEN,
    TRAINABLE,
    OptimizerConfig,
    make_optimizer,
    make_schedule,
    param_path_labels,
    param_paths,
    path_to_str,
)
from common.train.scaled_adam import scaled_adam
from tests.helpers import assert_close

# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="lion"), "name"),
        (dict(schedule="step"), "schedule"),
        (dict(grokfast="kalman"), "grokfast"),
        (dict(lr=0.0), "lr"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_steps=10, total_steps=10), "total_steps"),
        (dict(min_lr_ratio=1.5), "min_lr_ratio"),
        (dict(b2=1.0), "b2"),
        (dict(clip_norm=0.0), "clip_norm"),
        (dict(clip_norm="always"), "clip_norm"),
        (dict(name="scaled_adam", clip_norm=1.0), "clip_norm"),
        (dict(freeze=("enc/[",)), "freeze"),
        (dict(name="adam", weight_decay=0.1), "weight_decay"),
        (dict(name="scaled_adam", weight_decay=0.1), "weight_decay"),
        (dict(param_min_rms=1.0, param_max_rms=0.5), "param_max_rms"),
        (dict(scaled_adam_betas=(0.9,)), "scaled_adam_betas"),
        (dict(eden_steps_per_epoch=0), "eden_steps_per_epoch"),
        (dict(grokfast_window=0), "grokfast_window"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=rf"OptimizerConfig\.{field} must be"):
        OptimizerConfig(**kwargs)


def test_config_messages_and_coercion():
    with pytest.raises(ValueError, match=r"'adamw', 'adam', 'sgd', 'scaled_adam'"):
        OptimizerConfig(name="lion")
    cfg = OptimizerConfig(freeze="encoder/.*", scaled_adam_betas=[0.8, 0.9])
    assert cfg.freeze == ("encoder/.*",)
    assert cfg.scaled_adam_betas == (0.8, 0.9)
    hash(cfg)  # frozen and hashable: usable as a static jit argument
    # cosine/linear need total_steps, checked when the schedule is built.
    with pytest.raises(ValueError, match=r"OptimizerConfig\.total_steps must be set"):
        make_schedule(OptimizerConfig(schedule="cosine"))
    make_schedule(OptimizerConfig(schedule="constant"))


# ------------------------------------------------------------------- schedules


def test_cosine_and_linear_schedules():
    base = dict(lr=2e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    cos = jax.jit(make_schedule(OptimizerConfig(schedule="cosine", **base)))
    lin = jax.jit(make_schedule(OptimizerConfig(schedule="linear", **base)))
    # Warm-up: linear from 0 to lr over 10 steps.
    for s, want in [(0, 0.0), (1, 2e-4), (5, 1e-3), (9, 1.8e-3), (10, 2e-3)]:
        assert_close(cos(s), want)
        assert_close(lin(s), want)
    # Decay over the remaining 100 steps to lr * 0.1, then flat.
    cos_ref = {
        35: 2e-4 + 1.8e-3 * 0.5 * (1 + math.cos(math.pi * 0.25)),
        60: 1.1e-3,
        85: 2e-4 + 1.8e-3 * 0.5 * (1 + math.cos(math.pi * 0.75)),
        110: 2e-4,
        500: 2e-4,
    }
    lin_ref = {35: 1.55e-3, 60: 1.1e-3, 85: 6.5e-4, 110: 2e-4, 500: 2e-4}
    for s in cos_ref:
        assert_close(cos(s), cos_ref[s])
        assert_close(lin(s), lin_ref[s])
    assert_close(cos(35), 1.73639610306789e-3)  # the same, as a number


def test_constant_schedule_and_no_warmup():
    const = make_schedule(OptimizerConfig(schedule="constant", lr=1e-3, warmup_steps=4))
    assert [float(const(s)) for s in (0, 2, 4, 1000)] == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])
    cos = make_schedule(OptimizerConfig(schedule="cosine", lr=1e-3, total_steps=100))
    assert_close(cos(0), 1e-3)
    assert_close(cos(50), 5e-4)
    assert_close(cos(100), 0.0)


def test_eden_schedule_from_config():
    cfg = OptimizerConfig(
        schedule="eden",
        lr=0.04,
        warmup_steps=200,
        eden_lr_batches=1000,
        eden_lr_epochs=4.0,
        eden_steps_per_epoch=300,
        eden_warmup_start=0.25,
    )
    sched = jax.jit(make_schedule(cfg))
    for step in (0, 50, 199, 200, 900, 5000, 40000):
        b, e = float(step), step / 300
        warm = 1.0 if b >= 200 else 0.25 + 0.75 * b / 200
        want = 0.04 * ((b**2 + 1e6) / 1e6) ** -0.25 * ((e**2 + 16) / 16) ** -0.25 * warm
        assert_close(sched(step), want)


# ------------------------------------------------------------------- optimizer


def _tree(rng):
    return {
        "w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32),
        "b": jnp.asarray(rng.standard_normal((3,)), jnp.float32),
        "s": jnp.asarray(0.5, jnp.float32),
    }


def _run(tx, params, grads_seq):
    state = tx.init(params)
    out = []
    for g in grads_seq:
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
        out.append(u)
    return params, out


def test_adamw_matches_optax(rng):
    params = _tree(rng)
    grads = [_tree(rng) for _ in range(6)]
    cfg = OptimizerConfig(
        name="adamw",
        lr=1e-2,
        schedule="cosine",
        warmup_steps=2,
        total_steps=10,
        b1=0.8,
        b2=0.95,
        eps=1e-7,
        weight_decay=0.3,
        decay_1d=True,
        clip_norm=None,
    )
    got, _ = _run(make_optimizer(cfg), params, grads)
    ref_tx = optax.adamw(make_schedule(cfg), b1=0.8, b2=0.95, eps=1e-7, weight_decay=0.3)
    want, _ = _run(ref_tx, params, grads)
    for k in params:
        assert_close(got[k], want[k], rtol=1e-6)


def test_weight_decay_skips_1d_params(rng):
    params = _tree(rng)
    zeros = jax.tree.map(jnp.zeros_like, params)  # Adam's step is 0: only decay remains
    for decay_1d in (False, True):
        cfg = OptimizerConfig(
            name="adamw",
            lr=0.1,
            schedule="constant",
            weight_decay=0.5,
            decay_1d=decay_1d,
            clip_norm=None,
        )
        tx = make_optimizer(cfg)
        u, _ = tx.update(zeros, tx.init(params), params)
        assert_close(u["w"], -0.1 * 0.5 * np.asarray(params["w"]))
        for k in ("b", "s"):
            if decay_1d:
                assert_close(u[k], -0.1 * 0.5 * np.asarray(params[k]))
            else:
                np.testing.assert_array_equal(np.asarray(u[k]), 0.0)


def test_global_norm_clipping(rng):
    params = _tree(rng)
    cfg = OptimizerConfig(name="sgd", lr=1.0, schedule="constant", clip_norm=1.0)
    tx = make_optimizer(cfg)
    big = jax.tree.map(lambda x: 10.0 * x, _tree(rng))
    norm = float(np.sqrt(sum(np.sum(np.float64(x) ** 2) for x in jax.tree.leaves(big))))
    assert norm > 1.0
    u, _ = tx.update(big, tx.init(params), params)
    assert_close(optax.tree.norm(u), 1.0)
    for k in params:
        assert_close(u[k], -np.asarray(big[k], np.float64) / norm)
    small = jax.tree.map(lambda x: 1e-3 * x, big)
    u, _ = tx.update(small, tx.init(params), params)
    for k in params:
        assert_close(u[k], -np.asarray(small[k], np.float64))


def test_clip_defaults_make_sense_together():
    """"auto": a global clip of 1.0 for adamw/adam/sgd, none in front of ScaledAdam's own
    clipping (but 1.0 again when that is off); explicit values are kept."""
    assert OptimizerConfig().clip_norm == "auto"
    for name in ("adamw", "adam", "sgd"):
        assert OptimizerConfig(name=name).global_clip_norm == 1.0
    assert OptimizerConfig(name="scaled_adam").global_clip_norm is None
    assert OptimizerConfig(name="scaled_adam", clipping_scale=None).global_clip_norm == 1.0
    assert OptimizerConfig(name="scaled_adam", clipping_scale=None,
                           clip_norm=5.0).global_clip_norm == 5.0
    assert OptimizerConfig(clip_norm=None).global_clip_norm is None
    assert OptimizerConfig(clip_norm=3.0).global_clip_norm == 3.0
    with pytest.raises(ValueError, match="ScaledAdam clips itself"):
        OptimizerConfig(name="scaled_adam", clip_norm=1.0)
    # "auto" on sgd is the clip to 1.0
    params = {"w": jnp.ones((2, 2))}
    tx = make_optimizer(OptimizerConfig(name="sgd", lr=1.0, schedule="constant"))
    u, _ = tx.update({"w": jnp.full((2, 2), 10.0)}, tx.init(params), params)
    assert_close(optax.tree.norm(u), 1.0)


def test_scaled_adam_gets_no_global_clip(monkeypatch):
    import common.train.optim as optim_module

    clips = []
    real = optim_module.clip_by_global_norm
    monkeypatch.setattr(optim_module, "clip_by_global_norm",
                        lambda n, **kw: clips.append(n) or real(n, **kw))
    make_optimizer(OptimizerConfig(name="scaled_adam", schedule="constant"))
    assert clips == []
    make_optimizer(OptimizerConfig(name="adamw", schedule="constant"))
    assert clips == [1.0]
    # a config read back from a file keeps "auto"; numbers and None parse as before
    from common.config import config_from_dict, config_to_dict

    cfg = OptimizerConfig(name="scaled_adam")
    assert config_from_dict(OptimizerConfig, config_to_dict(cfg)) == cfg
    assert config_from_dict(OptimizerConfig, {"clip_norm": 0.5}).clip_norm == 0.5
    assert config_from_dict(OptimizerConfig, {"clip_norm": None}).clip_norm is None


def test_grokfast_in_chain(rng):
    params = _tree(rng)
    g1, g2 = _tree(rng), _tree(rng)
    cfg = OptimizerConfig(
        name="sgd",
        lr=1.0,
        schedule="constant",
        clip_norm=None,
        grokfast="ema",
        grokfast_alpha=0.9,
        grokfast_lamb=2.0,
    )
    _, (u1, u2) = _run(make_optimizer(cfg), params, [g1, g2])
    for k in params:
        a, b = np.asarray(g1[k], np.float64), np.asarray(g2[k], np.float64)
        assert_close(u1[k], -3.0 * a)
        assert_close(u2[k], -(b + 2.0 * (0.9 * a + 0.1 * b)))


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_scaled_adam_from_config_matches_direct(rng):
    params = _tree(rng)
    grads = [_tree(rng) for _ in range(6)]
    cfg = OptimizerConfig(
        name="scaled_adam",
        lr=0.03,
        schedule="constant",
        clip_norm=None,
        clipping_scale=2.0,
        size_update_period=2,
        scaled_adam_betas=(0.85, 0.97),
    )
    got, _ = _run(make_optimizer(cfg), params, grads)
    want, _ = _run(
        scaled_adam(
            make_schedule(cfg), betas=(0.85, 0.97), size_update_period=2, clipping_scale=2.0
        ),
        params,
        grads,
    )
    for k in params:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))


# ------------------------------------------------------------- paths and nnx


class _Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.enc = nnx.Linear(3, 4, rngs=rngs)
        # Logical axes on a frozen kernel: the mesh must shard its (empty) optimizer state.
        self.enc.kernel = axes.wrap(self.enc.kernel[...], ("embed", "mlp"))
        self.layers = nnx.List([nnx.LayerNorm(4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])
        self.gain = nnx.Param(jnp.ones(()))

    def __call__(self, x):
        h = jax.nn.gelu(self.enc(x))
        return self.gain[...] * self.layers[1](self.layers[0](h))


_TINY_PATHS = {
    "enc/kernel",
    "enc/bias",
    "layers/0/scale",
    "layers/0/bias",
    "layers/1/kernel",
    "layers/1/bias",
    "gain",
}


def test_path_to_str():
    assert path_to_str((DictKey("a"), SequenceKey(2), GetAttrKey("w"))) == "a/2/w"
    assert path_to_str((DictKey("a"), DictKey(0), GetAttrKey("value"))) == "a/0"
    assert path_to_str(()) == ""
    state = nnx.state(_Tiny(nnx.Rngs(0)), nnx.Param)
    assert set(param_paths(state)) == _TINY_PATHS
    # The array-level walk (through nnx.Variable nodes) names the same parameters.
    leaves = jax.tree_util.tree_leaves_with_path(state)
    assert {path_to_str(p) for p, _ in leaves} == _TINY_PATHS
    # Plain nested containers too.
    tree = {"a": [jnp.zeros(2), {"b": jnp.zeros(())}], "c": (jnp.zeros(1),)}
    assert param_paths(tree) == ["a/0", "a/1/b", "c/0"]


def test_param_path_labels(rng):
    state = nnx.state(_Tiny(nnx.Rngs(0)), nnx.Param)
    labels = param_path_labels(state, {"frozen": "^enc/", "norm": ["layers/0/"]}, default="x")
    flat = {path_to_str(p): v for p, v in jax.tree_util.tree_leaves_with_path(labels)}
    assert flat == {
        "enc/kernel": "frozen",
        "enc/bias": "frozen",
        "layers/0/scale": "norm",
        "layers/0/bias": "norm",
        "layers/1/kernel": "x",
        "layers/1/bias": "x",
        "gain": "x",
    }
    assert jax.tree.structure(jax.tree.map(lambda _: 0, labels)) == jax.tree.structure(
        jax.tree.map(lambda _: 0, state)
    )
    with pytest.raises(ValueError, match="match no parameter"):
        param_path_labels(state, {"frozen": "decoder/"})


def _loss(graphdef, params, rest, x, y):
    model = nnx.merge(graphdef, params, rest)
    return jnp.mean((model(x) - y) ** 2)


@pytest.mark.parametrize(
    "cfg",
    [
        OptimizerConfig(
            name="adamw", lr=1e-2, schedule="constant", weight_decay=0.01, freeze=("^enc/",)
        ),
        OptimizerConfig(
            name="adam",
            lr=1e-2,
            schedule="linear",
            total_steps=50,
            grokfast="ma",
            grokfast_window=3,
            freeze=("^enc/",),
        ),
        OptimizerConfig(
            name="sgd",
            lr=5e-2,
            schedule="cosine",
            total_steps=50,
            sgd_momentum=0.9,
            weight_decay=1e-3,
            freeze=("^enc/",),
        ),
        OptimizerConfig(
            name="scaled_adam",
            lr=0.03,
            schedule="eden",
            warmup_steps=5,
            clip_norm=None,
            grokfast="ema",
            freeze=("^enc/", "layers/0/scale"),
        ),
    ],
    ids=["adamw", "adam+ma", "sgd", "scaled_adam+ema"],
)
def test_nnx_state_end_to_end(rng, cfg):
    model = _Tiny(nnx.Rngs(1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(rng.standard_normal((16, 3)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((16, 2)), jnp.float32)
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    # The train loop shards it onto the mesh, frozen leaves' empty (MaskedNode) state too.
    jax.device_put(opt_state, state_shardings(opt_state, make_mesh(MeshConfig())))

    # No optimizer state (no array at all) for the frozen parameters.
    frozen = {p for p in _TINY_PATHS if any(re.search(f, p) for f in cfg.freeze)}
    assert frozen
    state_paths = [path_to_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(opt_state)]
    for fp in frozen:
        assert not any(sp.endswith("/" + fp) or f"/{fp}/" in sp for sp in state_paths), fp
    assert jax.tree.leaves(opt_state.inner_states[FROZEN]) == []
    n_trainable = sum(
        v[...].size for p, v in nnx.to_flat_state(params) if "/".join(map(str, p)) not in frozen
    )
    n_state = sum(x.size for x in jax.tree.leaves(opt_state.inner_states[TRAINABLE]))
    assert n_state >= n_trainable  # trainable leaves do carry state

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(_loss, argnums=1)(graphdef, params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    p0 = jax.tree.map(np.asarray, params)
    losses = []
    for _ in range(25):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert isinstance(params, nnx.State)
    assert jax.tree.structure(params) == jax.tree.structure(p0)
    for p, v in nnx.to_flat_state(params):
        name = "/".join(map(str, p))
        before = _flat_value(p0, p)
        if name in frozen:
            np.testing.assert_array_equal(np.asarray(v[...]), before)
        else:
            assert not np.array_equal(np.asarray(v[...]), before), name
    assert losses[-1] < losses[0], losses
    nnx.update(model, params)
    assert_close(model.layers[1].kernel[...], _flat_value(params, ("layers", 1, "kernel")))


def _flat_value(state, path):
    return np.asarray(dict(nnx.to_flat_state(state))[tuple(path)][...])


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_clip_takes_the_given_norm(rng, scale):
    """The clip is optax's, bit for bit, whether it computes the norm or is handed it
    (the train step passes the norm it computed for its skip test and metric)."""
    from common.train.optim import clip_by_global_norm

    grads = jax.tree.map(lambda x: x * scale, _tree(rng))
    ref, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    tx = clip_by_global_norm(1.0)
    own, _ = tx.update(grads, tx.init(grads))
    given, _ = tx.update(grads, tx.init(grads), grad_norm=optax.tree.norm(grads))
    for got in (own, given):
        jax.tree.map(np.testing.assert_array_equal, got, ref)


def test_frozen_clip_ignores_the_given_norm(rng):
    """Inside a freeze the clip covers the trainable leaves only, as before: the norm of
    all gradients (frozen ones included) handed by the step must not replace it."""
    params = {"a": jnp.ones((3,)), "b": jnp.ones((4,))}
    grads = {"a": jnp.full((3,), 10.0), "b": jnp.full((4,), 1000.0)}
    cfg = OptimizerConfig(name="sgd", lr=1.0, schedule="constant", clip_norm=1.0,
                          freeze=("^b",))
    tx = make_optimizer(cfg)
    u, _ = tx.update(grads, tx.init(params), params, grad_norm=optax.tree.norm(grads))
    assert_close(optax.tree.norm(u["a"]), 1.0)
    np.testing.assert_array_equal(u["b"], 0.0)
