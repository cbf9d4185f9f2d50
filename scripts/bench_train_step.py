"""Benchmark the shared train step on a transformer stack and a conv stack.

    uv run python scripts/bench_train_step.py                     # tiny + small (CPU)
    uv run python scripts/bench_train_step.py --sizes small medium large --dtype bfloat16

Uses the same code path as training (``make_train_step`` + ``jit_train_step`` with mesh
shardings and donation, AdamW). Prints step time, compile time, tokens or samples per
second, MFU (XLA's FLOP count over the device's peak, on known accelerators) and peak
memory. Figures go to BENCHMARKS.md with the device and date.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx

from common import bench
from common.nn import axes as ax
from common.nn.activations import Snake
from common.nn.conv import Conv
from common.nn.linear import Linear
from common.nn.transformer import TransformerConfig, TransformerStack
from common.train.hardware import peak_memory_bytes
from common.train.mesh import MeshConfig, batch_sharding, make_mesh, state_shardings
from common.train.optim import OptimizerConfig, make_optimizer
from common.train.step import TrainState, jit_train_step, make_train_step

# (dim, layers, heads, batch, length) for transformers; (channels, blocks, batch, samples)
# for conv stacks.
TRANSFORMER_SIZES = {
    "tiny": (128, 2, 4, 8, 128),
    "small": (256, 4, 4, 8, 256),
    "medium": (768, 12, 12, 16, 1024),
    "large": (1024, 24, 16, 16, 2048),
}
CONV_SIZES = {
    "tiny": (32, 2, 4, 4096),
    "small": (64, 4, 8, 8192),
    "medium": (256, 8, 16, 24000),
    "large": (512, 8, 32, 48000),
}


class TransformerModel(nnx.Module):
    def __init__(self, dim, layers, heads, dtype, rngs):
        self.inp = Linear(dim, dim, axes=(None, ax.EMBED), dtype=dtype, rngs=rngs)
        self.body = TransformerStack(TransformerConfig(
            dim=dim, num_layers=layers, num_heads=heads, num_kv_heads=max(1, heads // 4),
            causal=True, dtype=dtype, remat="dots"), rngs=rngs)

    def __call__(self, x):
        return self.body(self.inp(x))


class ConvModel(nnx.Module):
    """DAC-style residual units: Snake -> dilated conv -> Snake -> 1x1 conv, residual."""

    def __init__(self, channels, blocks, dtype, rngs):
        self.inp = Conv(1, channels, 7, dtype=dtype, rngs=rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.units = nnx.List([
            nnx.List([Snake(channels, rngs=rngs), Conv(channels, channels, 7, dilation=3 ** (i % 3),
                                                         weight_norm=True, **kw),
                      Snake(channels, rngs=rngs), Conv(channels, channels, 1, weight_norm=True,
                                                         **kw)])
            for i in range(blocks)])
        self.out = Conv(channels, 1, 7, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        h = self.inp(x)
        for s1, c1, s2, c2 in self.units:
            h = h + c2(s2(c1(s1(h))))
        return self.out(h)


def mse(model, batch, rng):
    pred = model(batch["x"]).astype(jnp.float32)
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss, {}


def run(kind: str, size: str, dtype: str | None, mesh_cfg: MeshConfig, iters: int) -> dict:
    if kind == "transformer":
        dim, layers, heads, b, t = TRANSFORMER_SIZES[size]
        build = lambda: TransformerModel(dim, layers, heads, dtype, nnx.Rngs(0))
        x = np.random.default_rng(0).standard_normal((b, t, dim), np.float32)
        batch, units, unit = {"x": x, "y": x}, b * t, "tokens/s"
    else:
        ch, blocks, b, n = CONV_SIZES[size]
        build = lambda: ConvModel(ch, blocks, dtype, nnx.Rngs(0))
        x = np.random.default_rng(0).standard_normal((b, n, 1), np.float32)
        batch, units, unit = {"x": x, "y": x}, b * n / 24_000, "audio s/s (24 kHz)"
    mesh = make_mesh(mesh_cfg)
    tx = make_optimizer(OptimizerConfig(name="adamw", lr=1e-4, schedule="constant"))
    init = lambda: TrainState.create(build(), tx, jax.random.key(0))[1]
    graphdef = TrainState.create(nnx.eval_shape(build), tx, jax.random.key(0))[0]
    abstract = jax.eval_shape(init)
    shardings = state_shardings(abstract, mesh)
    state = jax.jit(init, out_shardings=shardings)()
    bsh = batch_sharding(mesh)
    step = jit_train_step(make_train_step(graphdef, mse, tx), shardings, bsh)
    batch = jax.device_put(batch, bsh)
    compile_s, flops = bench.compile_stats(step, state, batch)

    holder = {"state": state}

    def call(batch):  # the state is donated: thread it through
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    t = bench.time_jitted(call, batch, iters=iters)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract.params))
    return {"model": kind, "size": size, "params_M": n_params / 1e6, "dtype": dtype or "float32",
            "compile_s": compile_s, "step_ms": t.step_s * 1e3, "throughput": units / t.step_s,
            "unit": unit,
            "mfu": bench.mfu(flops, t.step_s, jax.device_count()),
            "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20}


@dataclasses.dataclass(frozen=True)
class Options:
    sizes: tuple[Literal[tuple(TRANSFORMER_SIZES)], ...] = ("tiny", "small")
    """Model sizes to time (TRANSFORMER_SIZES / CONV_SIZES)."""
    models: tuple[Literal["transformer", "conv"], ...] = ("transformer", "conv")
    """Model kinds to time."""
    dtype: Literal["bfloat16"] | None = None
    """Compute dtype (parameters stay float32); None: float32."""
    iters: int = 5
    """Timed steps after one warm-up."""
    fsdp: int = 1
    """Mesh fsdp size (data fills the rest)."""


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    print(f"backend: {bench.describe_backend()}")
    rows = [run(kind, size, args.dtype, MeshConfig(data=-1, fsdp=args.fsdp), args.iters)
            for kind in args.models for size in args.sizes]
    bench.print_table(rows, "train step (fwd + bwd + AdamW), sharded, state donated")


if __name__ == "__main__":
    main()
