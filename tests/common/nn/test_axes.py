"""Logical axis names: the param helper checks them, a rules table shards a stack by them."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from flax.core import spmd
from jax.sharding import NamedSharding, PartitionSpec

from common.nn import axes as ax
from common.nn.transformer import TransformerConfig, TransformerStack
from tests.helpers import assert_close


def test_param_helper_validates_names():
    with pytest.raises(ValueError, match="needs 2 axis names"):
        ax.param(None, nnx.initializers.zeros_init(), (2, 3), (ax.EMBED,))
    with pytest.raises(ValueError, match="unknown logical axis"):
        ax.param(None, nnx.initializers.zeros_init(), (2,), ("embd",))


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
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
