"""Linear over several axes and Embed: numpy references, bf16, grads, logical axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Embed, Linear
from tests.helpers import assert_close


def test_linear_contracts_multiple_axes(rng):
    lin = Linear((3, 4), (2, 5), axes=(ax.HEADS, ax.HEAD_DIM, ax.EMBED, ax.MLP), use_bias=True,
                 bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    y = lin(jnp.asarray(x))
    assert y.shape == (6, 2, 5) and y.dtype == jnp.float32
    w = np.asarray(lin.kernel[...], np.float64)
    ref = np.einsum("bij,ijkl->bkl", x, w) + np.asarray(lin.bias[...])
    assert_close(y, ref, 1e-5)
    assert ax.logical_axes(lin.bias) == (ax.EMBED, ax.MLP)
    with pytest.raises(ValueError, match="trailing dims"):
        lin(jnp.ones((2, 4, 3)))


def test_linear_bf16_and_grad(rng):
    lin = Linear(8, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(1))
    x = jnp.asarray(rng.standard_normal((3, 8)), jnp.float32)
    y = jax.jit(lambda m, x: m(x))(lin, x)
    assert y.dtype == jnp.bfloat16 and lin.kernel[...].dtype == jnp.float32
    g = nnx.grad(lambda m: jnp.sum(m(x).astype(jnp.float32)))(lin)
    assert bool(jnp.all(jnp.isfinite(g.kernel[...])))


def test_embed_lookup_and_tied_head(rng):
    emb = Embed(11, 6, rngs=nnx.Rngs(2))
    ids = jnp.array([[0, 3, 10]])
    np.testing.assert_array_equal(emb(ids), emb.embedding[...][ids])
    x = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)
    assert_close(emb.attend(x), np.asarray(x) @ np.asarray(emb.embedding[...]).T, 1e-5)
    assert ax.logical_axes(emb.embedding) == (ax.VOCAB, ax.EMBED)
