"""The UNet denoiser: ADM's layout (levels, skips, attention), logical axes, the zero output
at initialisation, jit and gradients in one compiled program, the time and condition
embeddings, the null condition of classifier-free guidance (``cond=None``, condition
dropout) and a guided sampling run; the config's errors.

The zero-initialised convolutions make the output exactly 0 and cut the gradient to most
parameters at initialisation, so the tests that need a working network first ``perturb``
every parameter that starts at exactly zero.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from worldmodel.diffusion.conditioning import (
    NULL_CLASS,
    drop_condition,
    null_condition,
    timestep_embedding,
)
from worldmodel.diffusion.objectives import Diffusion
from worldmodel.diffusion.samplers import guided, sample
from worldmodel.diffusion.unet import UNet
from worldmodel.diffusion.unet_config import UNetConfig

CFG = UNetConfig.tiny()  # widths (16, 32), one block per level, attention at level 1: f = 2
COND_CFG = UNetConfig.tiny(num_classes=3, cond_dim=5)
B, SIDE = 2, 8


# Inputs and checks stay in numpy outside the one jit per test: every eager jax op of a new
# shape is a compilation of its own.
def _x(seed=0, b=B, side=SIDE):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((b, side, side, CFG.in_channels)), jnp.float32)


def _cond(seed=1, b=B):
    rng = np.random.default_rng(seed)
    return {"class": jnp.asarray(np.arange(b) % COND_CFG.num_classes, jnp.int32),
            "vector": jnp.asarray(rng.standard_normal((b, COND_CFG.cond_dim)), jnp.float32)}


@functools.cache
def _built(cfg: UNetConfig) -> UNet:
    # Building compiles one initializer per parameter shape (most of a test's time on a
    # small CPU): build each config once per module and hand out copies.
    return UNet(cfg, rngs=nnx.Rngs(0))


def unet(cfg: UNetConfig) -> UNet:
    """A fresh UNet of ``cfg`` (seed 0): its own variables, so a test may change them."""
    return nnx.clone(_built(cfg))


def perturb(model: nnx.Module, scale: float = 0.2, seed: int = 7) -> nnx.Module:
    """Give every parameter that is exactly zero (the zero-initialised convolutions and
    projections, the biases) small random values, so the whole network is live."""
    rng = np.random.default_rng(seed)
    count = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Param) and not np.any(np.asarray(node[...])):
            node[...] = jnp.asarray(scale * rng.standard_normal(node[...].shape), jnp.float32)
            count += 1
    assert count > 0
    return model


def test_layout_axes_and_zero_output_at_init():
    model = unet(CFG)
    assert_params_have_axes(model)
    assert [len(level) for level in model.down] == [1, 1]
    assert [len(level) for level in model.up] == [2, 2]  # one more per level, as ADM
    assert len(model.downsamples) == len(model.upsamples) == 1
    assert model.downsamples[0].conv.stride == (2, 2)
    # attention at level 1 only (down: second list; up: deepest first) and in the middle
    assert [b.attn is not None for level in model.down for b in level] == [False, True]
    assert [b.attn is not None for level in model.up for b in level] == [True, True, False,
                                                                          False]
    assert model.middle.attn is not None
    # skips concatenated: the deepest up block reads 32 + 32, the last one 16 + 16 (conv_in)
    assert model.up[0][0].res.conv1.in_channels == 64
    assert model.up[-1][-1].res.conv1.in_channels == 32
    assert model.class_embed is None and model.vector_proj is None
    y = nnx.jit(lambda m, x: m(x, jnp.array([0.3, 0.9])))(model, _x())
    assert y.shape == (B, SIDE, SIDE, CFG.in_channels) and y.dtype == jnp.float32
    np.testing.assert_array_equal(y, 0.0)  # the zero-initialised output conv


def test_ddpm_cifar10_layout_has_ddpm_parameter_count():
    # Ho et al.'s CIFAR-10 network (128 wide, mult (1, 2, 2, 2), two blocks per level,
    # one-head attention at 16x16 and in the middle) has 35,746,307 parameters (35.7M in
    # the paper; the count of its PyTorch ports): every layer, skip and width as DDPM's.
    cfg = UNetConfig(in_channels=3, channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                     attention_levels=(1,), num_heads=1)
    shapes = nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0)))  # traced, not allocated
    assert sum(p.size for p in jax.tree.leaves(nnx.state(shapes, nnx.Param))) == 35_746_307


def test_side_length_and_condition_errors():
    model = unet(CFG)  # two levels: sides must be even; every check runs before any compute
    with pytest.raises(ValueError, match=r"multiples of 2 .* got 7x8"):
        model(jnp.zeros((1, 7, 8, 4)), jnp.zeros((1,)))
    with pytest.raises(ValueError, match="got a 'class' condition but num_classes=0"):
        model(jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), {"class": jnp.zeros((1,), int)})
    with pytest.raises(ValueError, match=r"unknown condition keys \['label'\]"):
        model(jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), {"label": jnp.zeros((1,), int)})


@pytest.mark.parametrize("overrides, field", [
    (dict(channels=15), "channels"),
    (dict(channel_mult=()), "channel_mult"),
    (dict(num_res_blocks=0), "num_res_blocks"),
    (dict(attention_levels=(2,)), "attention_levels"),
    (dict(attention_levels=(1, 1)), "attention_levels"),
    (dict(groups=5), "groups"),
    (dict(num_heads=3), "num_heads"),
    (dict(num_classes=-1), "num_classes"),
    (dict(cond_dim=-1), "cond_dim"),
    (dict(dtype="int8"), "dtype"),
])
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"UNetConfig\.{field}\b"):
        UNetConfig.tiny(**overrides)


@pytest.mark.slow  # its XLA compile alone is ~3 s of CPU (-O0, 2 cores): over the fast budget
def test_jit_and_grad_in_one_program_reach_every_parameter():
    model = perturb(unet(COND_CFG))
    objective = Diffusion()
    x0, cond = _x(), _cond()
    noise, t = _x(seed=3), jnp.array([0.2, 0.7])

    @nnx.jit
    def step(model):
        def loss_fn(model):
            pred = model(objective.corrupt(x0, noise, t), t, cond)
            return objective.loss(pred, x0, noise, t)[0]
        return nnx.value_and_grad(loss_fn)(model)

    value, grads = step(model)
    assert np.isfinite(float(value))
    flat = [(path, np.asarray(g[...])) for path, g in
            nnx.to_flat_state(nnx.state(grads, nnx.Param))]
    assert flat and all(np.all(np.isfinite(g)) for _, g in flat)
    dead = [path for path, g in flat if not np.any(g)]
    assert not dead, dead  # attention, class table and vector projection included


def test_timestep_embedding_and_time_changes_the_output():
    t = np.array([0.0, 0.003, 0.25, 1.0], np.float32)
    emb = timestep_embedding(jnp.asarray(t), 8)
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 4)
    args = np.outer(1000.0 * t.astype(np.float64), freqs)
    ref = np.concatenate([np.cos(args), np.sin(args)], -1)
    assert emb.shape == (4, 8) and emb.dtype == jnp.float32
    assert_close(emb, ref, 1e-5)

    model = perturb(unet(CFG))
    x = jnp.concatenate([_x(b=1)] * 2)  # one image at two times
    y = np.asarray(nnx.jit(lambda m, x, t: m(x, t))(model, x, jnp.array([0.1, 0.9])))
    gap = np.abs(y[0] - y[1]).max()
    assert gap > 1e-3 * np.abs(y).max(), gap


def test_conditioning_and_the_null_condition():
    model = perturb(unet(COND_CFG))
    x, t, cond = _x(), jnp.array([0.3, 0.6]), _cond()
    n = COND_CFG.num_classes
    other_class = {**cond, "class": (cond["class"] + 1) % n}
    other_vector = {**cond, "vector": _cond(seed=5)["vector"]}
    explicit_null = null_condition(COND_CFG, B)
    variants = [cond, other_class, other_vector, explicit_null]
    # the same null condition, spelled five ways
    nulls = [None, {}, explicit_null, {"class": jnp.full((B,), NULL_CLASS, jnp.int32)},
             {"vector": explicit_null["vector"]}]
    bad_ids = {"class": jnp.array([n + 1, -2], jnp.int32)}

    @nnx.jit
    def run(model):
        # one forward over the four conditions side by side (examples are independent)
        both = jax.tree.map(lambda *c: jnp.concatenate(c), *variants)
        y = model(jnp.concatenate([x] * 4), jnp.concatenate([t] * 4), both)
        # the condition enters the network only through the embedding every block reads
        embs = [model.embed(t, c, B) for c in nulls]
        return jnp.split(y, 4), embs, model.embed(t, bad_ids, B)

    (base, by_class, by_vector, null), embs, bad = jax.tree.map(np.asarray, run(model))

    def gap(a):
        return np.abs(a - base).max() / np.abs(base).max()

    assert gap(by_class) > 1e-3 and gap(by_vector) > 1e-3 and gap(null) > 1e-3
    for emb in embs[1:]:  # cond=None, {}, NULL_CLASS and missing entries are the null
        np.testing.assert_array_equal(emb, embs[0])
    assert np.all(np.isnan(bad))  # a bad label is a NaN, not a wrapped real class
    assert null_condition(CFG) == {}


def test_drop_condition():
    cond = {"class": jnp.asarray(np.arange(64) % 3, jnp.int32),
            "vector": jnp.asarray(np.ones((64, 5)) + np.arange(64)[:, None], jnp.float32)}
    key = jax.random.key(0)
    kept = drop_condition(cond, key, 0.0)
    jax.tree.map(np.testing.assert_array_equal, kept, cond)
    dropped = drop_condition(cond, key, 1.0)
    np.testing.assert_array_equal(dropped["class"], NULL_CLASS)
    np.testing.assert_array_equal(dropped["vector"], 0.0)
    half = jax.jit(drop_condition)(cond, key, 0.5)
    is_null = np.asarray(half["class"]) == NULL_CLASS
    assert 10 < is_null.sum() < 54  # P(outside) < 1e-6 for 64 fair coins
    # one draw per example: its class and its vector are dropped together
    np.testing.assert_array_equal(np.all(np.asarray(half["vector"]) == 0, axis=1), is_null)
    np.testing.assert_array_equal(np.asarray(half["vector"])[~is_null],
                                  np.asarray(cond["vector"])[~is_null])
    assert drop_condition(None, key, 0.5) is None
    with pytest.raises(ValueError, match="same batch axis"):
        drop_condition({"class": jnp.zeros((4,), int), "vector": jnp.zeros((3, 5))}, key, 0.5)


def test_guided_sampling_smoke():
    model = perturb(unet(COND_CFG))
    x1, cond = _x(seed=9), _cond()

    @nnx.jit
    def run(model):
        # two calls of batch B (null_cond=None) and one call of batch 2B (explicit null)
        two_calls = sample(Diffusion(), guided(model, 2.0), x1, 2, cond=cond)
        one_call = sample(Diffusion(), guided(model, 2.0, null_condition(COND_CFG)), x1, 2,
                          cond=cond)
        return two_calls, one_call

    two_calls, one_call = (np.asarray(y) for y in run(model))
    assert two_calls.shape == x1.shape and np.all(np.isfinite(two_calls))
    assert_close(one_call, two_calls, 1e-5)


def test_bfloat16_compute_keeps_float32_parameters_and_output():
    cfg = dataclasses.replace(CFG, dtype="bfloat16")
    model = perturb(unet(cfg))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    y = nnx.jit(lambda m, x: m(x, jnp.array([0.5, 0.5])))(model, _x())
    assert y.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(y)))
