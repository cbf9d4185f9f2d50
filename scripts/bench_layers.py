"""Benchmark the shared layers: attention kernels and DSP (train steps: bench_train_step.py).

    uv run python scripts/bench_layers.py                 # CPU-sized shapes
    uv run python scripts/bench_layers.py --size large    # accelerator-sized shapes

Prints Markdown tables (step time, compile time, throughput, MFU on known
accelerators). Figures go to BENCHMARKS.md with the device and date.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import tyro

from common import bench
from common.audio import mel_spectrogram, stft
from common.nn.attention import dot_product_attention

SIZES = {
    # batch, seq, heads, kv_heads, head_dim, audio seconds
    "small": dict(b=4, t=256, h=8, kh=2, d=64, secs=4.0),
    "large": dict(b=16, t=2048, h=16, kh=4, d=128, secs=30.0),
}


def bench_attention(s: dict, dtype: jnp.dtype) -> list[dict]:
    key = jax.random.key(0)
    kq, kk, kv = jax.random.split(key, 3)
    q = jax.random.normal(kq, (s["b"], s["t"], s["h"], s["d"]), dtype)
    k = jax.random.normal(kk, (s["b"], s["t"], s["kh"], s["d"]), dtype)
    v = jax.random.normal(kv, (s["b"], s["t"], s["kh"], s["d"]), dtype)
    pos = jnp.arange(s["t"])
    mask = (pos[None, :] <= pos[:, None])[None, None]
    flops = 4 * s["b"] * s["h"] * s["t"] * s["t"] * s["d"]  # QK^T and PV, forward
    impls = ["reference", "xla"] + (["cudnn"] if jax.default_backend() == "gpu" else [])
    rows = []
    for impl in impls:
        fn = jax.jit(lambda q, k, v, impl=impl: dot_product_attention(
            q, k, v, mask=mask, scale=s["d"] ** -0.5, implementation=impl))
        try:
            t = bench.time_jitted(fn, q, k, v)
        except Exception as e:  # e.g. cuDNN refusing a shape: report, keep going
            rows.append(dict(kernel=impl, note=f"unavailable: {type(e).__name__}"))
            continue
        rows.append(dict(kernel=impl, dtype=jnp.dtype(dtype).name, compile_s=t.compile_s,
                         step_ms=t.step_s * 1e3, tokens_per_s=s["b"] * s["t"] / t.step_s,
                         mfu=bench.mfu(flops, t.step_s)))
    return rows


def bench_dsp(s: dict) -> list[dict]:
    sr = 24_000
    x = jax.random.normal(jax.random.key(2), (s["b"], int(s["secs"] * sr)))
    audio_s = s["b"] * s["secs"]
    rows = []
    fns = {
        "stft 1024/256": jax.jit(lambda x: jnp.abs(stft(x, 1024, 256))),
        "mel 1024/256/100": jax.jit(lambda x: mel_spectrogram(x, sr, 1024, 256, n_mels=100)),
    }
    for name, fn in fns.items():
        t = bench.time_jitted(fn, x)
        rows.append(dict(op=name, compile_s=t.compile_s, step_ms=t.step_s * 1e3,
                         audio_s_per_s=audio_s / t.step_s))
    return rows


@dataclasses.dataclass(frozen=True)
class Options:
    size: Literal[tuple(SIZES)] = "small"
    """Shapes: "small" for a CPU, "large" for an accelerator (see SIZES)."""


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    s = SIZES[args.size]
    print(f"backend: {bench.describe_backend()}; size={args.size} {s}")
    attn_dtype = jnp.bfloat16 if jax.default_backend() != "cpu" else jnp.float32
    bench.print_table(bench_attention(s, attn_dtype), "attention kernels (causal, GQA)")
    bench.print_table(bench_dsp(s), "DSP (24 kHz)")


if __name__ == "__main__":
    main()
