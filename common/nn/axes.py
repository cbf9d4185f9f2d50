"""Logical axis names and the one helper that creates parameters with them.

Every parameter in trc carries a tuple of *logical* axis names (``("embed", "mlp")``)
in its ``out_sharding`` metadata. A single rules table (``common.train``) maps those
names to mesh axes (``data``, ``fsdp``, ``tensor``), so models never mention the mesh.

Parameters are created with ``eager_sharding=False``: a model builds anywhere (CPU
tests, notebooks, inside ``jax.eval_shape``) without an active mesh, and the training
code places the state on the mesh afterwards from ``nnx.get_partition_spec`` under
``flax.core.spmd.logical_axis_rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# Activations.
BATCH = "batch"
LENGTH = "length"
# Dense / transformer parameters.
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
KV_HEADS = "kv_heads"
HEAD_DIM = "head_dim"
VOCAB = "vocab"
LAYERS = "layers"
NORM = "norm"
COND = "cond"
# Convolutions: kernel [*spatial, in/groups, out].
CONV_KERNEL = "conv_kernel"
CONV_IN = "conv_in"
CONV_OUT = "conv_out"

ALL_AXES = (
    BATCH, LENGTH, EMBED, MLP, HEADS, KV_HEADS, HEAD_DIM, VOCAB, LAYERS, NORM, COND,
    CONV_KERNEL, CONV_IN, CONV_OUT,
)

Initializer = Callable[..., jax.Array]
Axes = Sequence[str | None]


def param(
    rngs: nnx.Rngs | None,
    init: Initializer,
    shape: Sequence[int],
    axes: Axes,
    dtype: jnp.dtype = jnp.float32,
) -> nnx.Param:
    """Create an ``nnx.Param`` of ``shape`` initialised by ``init`` with logical ``axes``.

    ``rngs`` may be None for deterministic initialisers (ones, zeros, constants).
    """
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return wrap(init(key, tuple(int(s) for s in shape), dtype), axes)


def wrap(value: jax.Array, axes: Axes) -> nnx.Param:
    """Wrap an existing array as an ``nnx.Param`` carrying logical ``axes``."""
    axes = tuple(axes)
    if len(axes) != value.ndim:
        raise ValueError(f"param of shape {value.shape} needs {value.ndim} axis names, got {axes}")
    unknown = [a for a in axes if a is not None and a not in ALL_AXES]
    if unknown:
        raise ValueError(f"unknown logical axis names {unknown}; known: {ALL_AXES}")
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


def logical_axes(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names a variable was created with (None if it has none)."""
    return variable.get_metadata().get("out_sharding")


def compute_dtype(x: jax.Array, dtype: jnp.dtype | None) -> jnp.dtype:
    """The dtype a layer computes in: the configured one, else the input's."""
    return jnp.dtype(dtype) if dtype is not None else x.dtype
