"""ECAPA-TDNN: shapes, jit/grad, masks (left and right padding), config errors, axes."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.speech.config import EcapaConfig
from common.speech.ecapa import EcapaTdnn
from common.speech.pooling import AttentiveStatsPool, masked_mean_std

CFG = EcapaConfig.tiny()


@pytest.fixture(scope="module")
def model():
    return EcapaTdnn(dataclasses.replace(CFG, n_mels=20), rngs=nnx.Rngs(0))


def _mel(rng, b, t, n=20):
    return jnp.asarray(rng.standard_normal((b, t, n)), jnp.float32)


def test_shapes_jit_and_grad(model):
    rng = np.random.default_rng(0)
    mel, valid = _mel(rng, 3, 40), jnp.ones((3, 40), bool)
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, m, v: nnx.merge(graphdef, s)(m, v))
    emb = fwd(state, mel, valid)
    chex.assert_shape(emb, (3, CFG.embed_dim))
    assert emb.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(emb)))

    params, rest = nnx.split_state(state, nnx.Param, ...)

    def loss(p, r):  # train mode: batch norm updates its statistics in r
        return jnp.sum(jnp.square(nnx.merge(graphdef, p, r, copy=True)(mel, valid)))
    grads = jax.jit(jax.grad(loss))(params, rest)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) > 0 for g in leaves) == len(leaves)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_never_reaches_the_embedding(model, side):
    """Eval mode: an utterance padded inside a batch (left or right, any padding
    content) embeds exactly as it does alone. Train mode: padding content is ignored
    (batch norm's statistics are over valid frames)."""
    rng = np.random.default_rng(1)
    short, long_ = _mel(rng, 1, 23), _mel(rng, 1, 37)
    pad = 37 - 23
    junk = _mel(rng, 1, pad) * 100.0
    padded = (jnp.concatenate([junk, short], 1) if side == "left"
              else jnp.concatenate([short, junk], 1))
    valid = np.ones((2, 37), bool)
    if side == "left":
        valid[0, :pad] = False
    else:
        valid[0, 23:] = False
    batch, valid = jnp.concatenate([padded, long_], 0), jnp.asarray(valid)
    model.eval()
    try:
        alone = model(short, jnp.ones((1, 23), bool))
        together = model(batch, valid)
    finally:
        model.train()
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-5, atol=1e-5)
    other = batch.at[0].set(jnp.where(valid[0][:, None], batch[0], -7.0))
    graphdef, state = nnx.split(model)
    run = lambda x: nnx.merge(graphdef, state)(x, valid)  # train mode: batch statistics
    np.testing.assert_allclose(run(other), run(batch), rtol=1e-5, atol=1e-5)


def test_pooling_statistics_and_empty_rows():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 10, 4)), jnp.float32)
    w = jnp.full((2, 10, 1), 0.1)
    mean, std = masked_mean_std(x, w)
    np.testing.assert_allclose(mean, np.asarray(x).mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.asarray(x).std(1), rtol=1e-5)
    pool = AttentiveStatsPool(4, 8, rngs=nnx.Rngs(0))
    valid = jnp.array([[True] * 10, [False] * 10])
    out = pool(x, valid)
    chex.assert_shape(out, (2, 8))
    assert bool(jnp.all(jnp.isfinite(out)))


def test_every_parameter_has_logical_axes(model):
    params = nnx.state(model, nnx.Param)
    for path, var in jax.tree_util.tree_flatten_with_path(
            params, is_leaf=lambda v: isinstance(v, nnx.Variable))[0]:
        assert ax.logical_axes(var) is not None, path


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="res2net_scale"):
        EcapaConfig(channels=(8, 10, 10, 10, 30), res2net_scale=4)
    with pytest.raises(ValueError, match="one entry per layer"):
        EcapaConfig(channels=(8, 8, 8), kernel_sizes=(5, 3, 3, 3, 1))
    with pytest.raises(ValueError, match=r"mel \[B, T, 20\]"):
        EcapaTdnn(dataclasses.replace(CFG, n_mels=20), rngs=nnx.Rngs(0))(
            jnp.zeros((1, 5, 80)), jnp.ones((1, 5), bool))
