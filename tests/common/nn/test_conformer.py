"""Conformer block: shapes, grads, and padding (left or right) never reaching valid frames."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.conformer import ConformerBlock


@pytest.fixture(scope="module")
def block():
    return ConformerBlock(16, 2, conv_kernel=7, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_unpadded_in_eval(block, side):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 12, 16)), jnp.float32)
    junk = jnp.asarray(rng.standard_normal((1, 5, 16)) * 50, jnp.float32)
    padded = jnp.concatenate([junk, x] if side == "left" else [x, junk], axis=1)
    valid = jnp.arange(17)[None] >= 5 if side == "left" else jnp.arange(17)[None] < 12
    block.eval()
    try:
        alone = block(x, jnp.ones((1, 12), bool))
        got = block(padded, valid)
    finally:
        block.train()
    sel = got[:, 5:] if side == "left" else got[:, :12]
    np.testing.assert_allclose(sel, alone, rtol=1e-5, atol=1e-5)
    assert not bool(jnp.any(jnp.where(valid[..., None], 0.0, got)))


def test_train_mode_grads_and_axes(block):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 10, 16)), jnp.float32)
    valid = jnp.array([[True] * 10, [False] * 3 + [True] * 7])
    graphdef, params, rest = nnx.split(block, nnx.Param, ...)

    def loss(p, r):
        return jnp.sum(jnp.square(nnx.merge(graphdef, p, r, copy=True)(x, valid)))
    grads = jax.jit(jax.grad(loss))(params, rest)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    for path, var in jax.tree_util.tree_flatten_with_path(
            nnx.state(block, nnx.Param), is_leaf=lambda v: isinstance(v, nnx.Variable))[0]:
        assert ax.logical_axes(var) is not None, path
