"""Timing helpers shared by ``scripts/bench_*.py``: compile vs step time, MFU, tables.

Benchmark-only code, on top of ``common.train`` (which owns what production also needs:
``common.train.hardware``'s peak FLOP/s and memory). Benchmarks print tables; tests never
assert on time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from common.train.hardware import peak_flops
from common.train.mesh import batch_sharding, host_to_global, make_mesh, state_shardings
from common.train.step import jit_train_step, trace_init


@dataclasses.dataclass
class Timing:
    compile_s: float
    step_s: float


def time_jitted(fn: Callable[..., Any], *args: Any, iters: int = 10, warmup: int = 1) -> Timing:
    """Compile time (first call) and median step time of an already-jitted ``fn``.

    Results are blocked on, so asynchronous dispatch does not hide device time.
    """
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    times.sort()
    return Timing(compile_s=compile_s, step_s=times[len(times) // 2])


def mfu(flops_per_step: float | None, step_s: float, n_devices: int = 1) -> float | None:
    """Model FLOPs utilisation of ``n_devices`` of the first device's kind (None when
    the FLOPs or the device's peak are unknown)."""
    peak = peak_flops()
    if flops_per_step is None or peak is None:
        return None
    return flops_per_step / step_s / (peak * n_devices)


def compile_keep(jitted: Any, *args: Any) -> tuple[float, float | None, Any]:
    """``(compile_s, flops, executable)``: time to lower and compile ``jitted`` for
    ``args``, the FLOPs of one call from XLA's cost analysis (None where the backend
    reports none), and the executable to time: ``jax.jit`` does not reuse an
    ahead-of-time compile, so calling ``jitted`` would compile again (minutes for a
    large model on a CPU)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    try:
        cost = compiled.cost_analysis()
    except Exception:  # backends differ in what they report
        return compile_s, None, compiled
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return compile_s, (float(flops) if flops and flops > 0 else None), compiled


def compile_stats(jitted: Any, *args: Any) -> tuple[float, float | None]:
    """``(compile_s, flops)`` of ``compile_keep``, the executable dropped."""
    compile_s, flops, _ = compile_keep(jitted, *args)
    return compile_s, flops


def timed(fn: Callable[..., Any], *args: Any, iters: int, warmup: int = 1
          ) -> tuple[Timing, float, float]:
    """``time_jitted`` keeping each call's time, for the mean and std (it reports only
    the median). ``fn`` is blocked on. Returns ``(timing, mean_s, std_s)`` over the
    ``iters`` timed calls (the first call and the warm-up dropped)."""
    times: list[float] = []

    def call(*a):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*a))
        times.append(time.perf_counter() - t0)
        return out

    timing = time_jitted(call, *args, iters=iters, warmup=warmup)
    steady = np.asarray(times[-iters:])
    return timing, float(steady.mean()), float(steady.std())


def n_params(tree: Any) -> float:
    """Millions of elements in the arrays (or shape structs) of ``tree``."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree)) / 1e6


@dataclasses.dataclass
class TrainStepTiming:
    """``bench_train_step``'s result: ``abstract`` is the state's shapes, ``state`` and
    ``metrics`` are those after the last timed step (device arrays)."""

    compile_s: float
    flops: float | None
    mean_s: float
    std_s: float
    abstract: Any
    state: Any
    metrics: Any
    init_s: float = 0.0
    """building the initial state: tracing, compiling and running ``program.init``."""


def bench_train_step(program: Any, mesh_config: Any, host_batch: Any, *, iters: int
                     ) -> TrainStepTiming:
    """Time ``program.step`` (a ``common.train.program.Program``) exactly as
    ``common.train.loop.train`` runs it: state built sharded on the mesh (timed as
    ``init_s``), the step jitted
    with donation, the batch put on the mesh. Compiled once ahead of time (the compile
    time and XLA's FLOPs are measured), then ``iters`` steps after one warm-up step, the
    donated state threaded through."""
    mesh = make_mesh(mesh_config)
    t0 = time.perf_counter()
    traced = trace_init(program.init)
    abstract = traced.abstract
    shardings = state_shardings(abstract, mesh)
    state = jax.block_until_ready(traced.build(shardings))
    init_s = time.perf_counter() - t0
    step = jit_train_step(program.step, shardings, batch_sharding(mesh))
    batch = host_to_global(host_batch, mesh)
    compile_s, flops, step_exe = compile_keep(step, state, batch)
    holder = {"state": state}

    def call(batch):
        holder["state"], holder["metrics"] = step_exe(holder["state"], batch)
        return holder["metrics"]["loss"]

    # Already compiled: time_jitted's first call serves as the warm-up.
    _, mean_s, std_s = timed(call, batch, iters=iters, warmup=0)
    return TrainStepTiming(compile_s, flops, mean_s, std_s, abstract, holder["state"],
                           holder["metrics"], init_s)


def print_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Print rows (dicts with the same keys) as an aligned Markdown table."""
    if not rows:
        return
    cols = list(rows[0])
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    if title:
        print(f"\n### {title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def describe_backend() -> str:
    d = jax.devices()[0]
    return (f"{jax.device_count()} x {d.device_kind} ({d.platform}), jax {jax.__version__}")
