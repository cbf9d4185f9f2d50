import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.core import spmd
from jax.sharding import NamedSharding, PartitionSpec

from common.nn import axes as ax
from common.nn.linear import Embed, Linear
from common.nn.transformer import TransformerConfig, TransformerStack
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


def test_param_helper_validates_names():
    with pytest.raises(ValueError, match="needs 2 axis names"):
        ax.param(None, nnx.initializers.zeros_init(), (2, 3), (ax.EMBED,))
    with pytest.raises(ValueError, match="unknown logical axis"):
        ax.param(None, nnx.initializers.zeros_init(), (2,), ("embd",))


def test_logical_axes_shard_a_stack_on_a_mesh(rng):
    """The names map through a rules table to a real sharding, and results don't change."""
    assert jax.device_count() == 8, "tests/conftest.py sets 8 simulated devices"
    cfg = TransformerConfig(dim=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=64,
                            causal=True)
    model = TransformerStack(cfg, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((4, 6, 32)), jnp.float32)
    expected = model(x)

    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    rules = ((ax.LAYERS, None), (ax.EMBED, "fsdp"), (ax.MLP, "tensor"), (ax.HEADS, "tensor"),
             (ax.KV_HEADS, "tensor"), (ax.HEAD_DIM, None), (ax.NORM, None))
    graphdef, state = nnx.split(model)
    with spmd.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(state)
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                             is_leaf=lambda s: isinstance(s, PartitionSpec))
    sharded = jax.device_put(state, shardings)
    wi = sharded["layers"]["ffn"]["wi_0"]["kernel"][...]
    assert wi.sharding.spec == PartitionSpec(None, "fsdp", "tensor")
    assert wi.addressable_shards[0].data.shape == (2, 16, 32)

    x_sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec(("data", "fsdp"))))
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(sharded, x_sharded)
    assert_close(out, expected, 1e-5)
