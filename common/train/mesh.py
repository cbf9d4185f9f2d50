"""Device meshes, the logical-axis rules table, and placing state and batches on a mesh.

One mesh with axes ``(data, fsdp, tensor)`` spans every device of every process:

* ``data``   pure data parallelism: parameters replicated, batch split.
* ``fsdp``   ZeRO-3-style: batch split *and* parameters/optimizer state sharded (along
             their ``embed`` / ``conv_in`` axes); XLA all-gathers them per layer.
* ``tensor`` Megatron-style tensor parallelism over ``heads`` / ``mlp`` / ``conv_out``.

Parameters name their axes logically (``common.nn.axes``); ``DEFAULT_RULES`` maps those
names to mesh axes. A dimension that a mesh axis does not divide (a depthwise kernel's
single input channel, a 3-head layer on ``tensor=2``) falls back to replication rather
than failing, and the count of such fallbacks is logged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from flax.core import spmd
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.nn import axes as ax
from common.train.configs import MESH_AXES, MeshConfig

log = logging.getLogger(__name__)

BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    (ax.BATCH, BATCH_AXES),
    (ax.LENGTH, None),
    (ax.EMBED, "fsdp"),
    (ax.MLP, "tensor"),
    (ax.HEADS, "tensor"),
    (ax.KV_HEADS, "tensor"),
    (ax.HEAD_DIM, None),
    (ax.VOCAB, "tensor"),
    (ax.LAYERS, None),
    (ax.NORM, None),
    (ax.COND, None),
    (ax.CONV_KERNEL, None),
    (ax.CONV_IN, "fsdp"),
    (ax.CONV_OUT, "tensor"),
)


def maybe_initialize_distributed() -> bool:
    """Start JAX's multi-controller runtime when launched as one of several processes.

    Call before anything touches a JAX backend. Detects an explicit coordinator
    (``JAX_COORDINATOR_ADDRESS``), SLURM / Open MPI launches with several tasks, and
    multi-host TPU slices (``TPU_WORKER_HOSTNAMES`` with several hosts), where
    ``jax.distributed.initialize()`` discovers the rest itself. ``TRC_DISTRIBUTED=0/1``
    forces the decision. Returns whether it initialised.
    """
    forced = os.environ.get("TRC_DISTRIBUTED")
    if forced is not None:
        wanted = forced == "1"
    else:
        env = os.environ
        wanted = bool(
            env.get("JAX_COORDINATOR_ADDRESS")
            or int(env.get("SLURM_NTASKS", "1")) > 1
            or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
            or len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
        )
    if not wanted:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize()
    log.info("jax.distributed: process %d of %d, %d local / %d global devices",
             jax.process_index(), jax.process_count(), jax.local_device_count(),
             jax.device_count())
    return True


def make_mesh(cfg: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all, all processes).

    Axes are ``Auto``: XLA propagates shardings from the annotated inputs (GSPMD), so
    model code needs no sharding annotations of its own.
    """
    devices = list(devices) if devices is not None else jax.devices()
    shape = cfg.shape(len(devices))
    auto = (jax.sharding.AxisType.Auto,) * 3
    if devices == jax.devices():
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def _fit_spec(spec: PartitionSpec, shape: tuple[int, ...],
              mesh: Mesh) -> tuple[PartitionSpec, bool]:
    """Drop mesh axes that do not divide their dimension or were already used."""
    used: set[str] = set()
    out: list[Any] = []
    changed = False
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = () if entry is None else ((entry,) if isinstance(entry, str) else tuple(entry))
        kept = []
        for name in names:
            size = mesh.shape[name]
            if name in used or dim % (math.prod(mesh.shape[k] for k in kept) * size):
                changed = changed or size > 1
                continue
            kept.append(name)
            used.add(name)
        out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
    return PartitionSpec(*out), changed


def state_shardings(state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """``NamedSharding`` for every leaf of a pytree holding ``nnx.Variable``s or arrays.

    Works on an ``nnx.State`` and on optimizer states built from one (optax keeps the
    Variables' metadata, so Adam moments shard like their parameters). Leaves without
    logical names are replicated. The result has the input's structure and can be
    passed as ``in_shardings``/``out_shardings`` or to ``jax.device_put``.
    """
    with spmd.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(state)
    fallbacks = 0

    def to_sharding(spec: Any, leaf: Any) -> NamedSharding:
        nonlocal fallbacks
        spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
        if not hasattr(leaf, "shape"):  # e.g. optax's MaskedNode: a frozen leaf's no-state
            return NamedSharding(mesh, PartitionSpec())
        fitted, changed = _fit_spec(spec, tuple(leaf.shape), mesh)
        fallbacks += changed
        return NamedSharding(mesh, fitted)

    out = jax.tree.map(to_sharding, specs, state,
                       is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)
    if fallbacks:
        log.info("sharding: %d array(s) replicated along a mesh axis that does not divide "
                 "them", fallbacks)
    return out


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Shard a batch's leading axis over ``data`` x ``fsdp``; replicate the rest."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def process_shard() -> tuple[int, int]:
    """``(index, count)`` of this process, for per-host data sharding."""
    return jax.process_index(), jax.process_count()


def host_to_global(batch: Any, mesh: Mesh) -> Any:
    """Assemble each process's local batch slice into globally sharded arrays.

    Every process passes its own ``[local_batch, ...]`` arrays (its share of the global
    batch, as the data pipeline sharded it); the result is ``[global_batch, ...]``
    sharded over ``data`` x ``fsdp``. On one process this is a plain ``device_put``.
    """
    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        sharding = batch_sharding(mesh, x.ndim)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)
