"""Benchmark the SNAC codec: encode / decode real-time factor and the fine-tuning step,
ours (JAX) and the PyTorch ``snac`` package side by side in one run.

    uv run python scripts/bench_snac.py                          # 24 kHz model, both
    uv run python scripts/bench_snac.py --seconds 10 --batch 4 --iters 3
    uv run python scripts/bench_snac.py --model 32khz --no-torch --json snac.json

Two tables, each with a row per framework:

1. Encode and decode in eval mode on ``--batch`` x ``--seconds`` of speech-like audio:
   ours jitted (``SNAC.encode`` / ``decode`` over the split state, noise off), the
   package's under ``torch.inference_mode``. RTF = compute seconds / audio seconds (< 1
   is faster than real time), "x_realtime" its inverse; ``first_call_s`` is JAX's
   compile (and torch's first call).
2. The fine-tuning step on ``--train-batch`` x ``--train-seconds`` (rounded up to the
   codec's pad multiple, as the curriculum's segments are): ``decoder-only`` (encoder
   and quantizer frozen, as preset ``finetune-24khz``) and ``full`` (everything
   trained, no GAN). Ours is ``tokenizer.snac.training.build_program``'s step exactly
   as ``python -m tokenizer.snac.train`` runs it (sharded state, donation, L1 +
   MR-STFT 1024/2048/4096, noise blocks on); the package's is the same loss in torch
   (``scripts/bench_snac_torch.py`` says what it runs). Columns: compile, step time
   (mean and std), samples/s, audio seconds per second, MFU (JAX, known accelerators
   only) and peak memory (device peak on accelerators, max RSS on CPU).

The PyTorch rows need the oracle environment (``bash scripts/setup_oracle_env.sh``, or
``--torch-python``); without it they are left out, saying so. Both models have random
weights (speed does not depend on them) and the same published config. Figures go to
BENCHMARKS.md with the device, versions and date.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro
from flax import nnx

from common import bench
from common.data.batching import round_up
from common.train.hardware import peak_memory_bytes
from tokenizer.snac.config import MODEL_PRESETS, SnacModelConfig
from tokenizer.snac.model import SNAC
from tokenizer.snac.train_config import PRESETS, SnacConfig
from tokenizer.snac.training import build_program

REPO = Path(__file__).resolve().parent.parent
MODES = {"decoder-only": ("encoder", "quantizer"), "full": ()}  # the frozen parts


def speech_like(batch: int, n: int, sr: int, seed: int = 0) -> np.ndarray:
    """``[batch, n]`` float32: harmonics on a wandering pitch plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = rng.uniform(90, 250, (batch, 1)) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0, axis=1) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1
    return (wav + 0.01 * rng.standard_normal((batch, n))).astype(np.float32)


def jax_label() -> str:
    d = jax.devices()[0]
    return f"jax {jax.__version__} {d.platform} ({jax.device_count()} x {d.device_kind})"


def codec_rows(model_cfg: SnacModelConfig, wav: np.ndarray, iters: int) -> list[dict]:
    """Table 1's JAX rows: jitted encode, then decode of its codes."""
    codec = SNAC(model_cfg, rngs=nnx.Rngs(0))
    codec.eval()
    graphdef, state = nnx.split(codec)
    # jax.jit over the split state: no per-call graph traversal in the timings, and the
    # weights are arguments, not constants folded into the program.
    encode = jax.jit(lambda s, w: nnx.merge(graphdef, s).encode(w))
    decode = jax.jit(lambda s, c: nnx.merge(graphdef, s).decode(c))
    x = jax.device_put(wav[..., None])
    b, audio_s = wav.shape[0], wav.size / model_cfg.sampling_rate

    def row(op, fn, *args):
        timing, mean, std = bench.timed(fn, *args, iters=iters)
        return {"framework": jax_label(), "op": op, "batch": b, "audio_s": audio_s,
                "first_call_s": timing.compile_s, "ms": mean * 1e3, "std_ms": std * 1e3,
                "rtf": mean / audio_s, "x_realtime": audio_s / mean}

    rows = [row("encode", encode, state, x)]  # timed first: its first call compiles
    rows.append(row("decode", decode, state, encode(state, x)))
    return rows


def train_config(model_cfg: SnacModelConfig, mode: str, batch: int) -> SnacConfig:
    cfg = PRESETS["finetune-24khz"]
    return dataclasses.replace(cfg, model=model_cfg, freeze=MODES[mode],
                               data=dataclasses.replace(cfg.data, batch_size=batch))


def train_row(model_cfg: SnacModelConfig, mode: str, wav: np.ndarray, iters: int) -> dict:
    """Table 2's JAX row for one mode."""
    b, n = wav.shape
    cfg = train_config(model_cfg, mode, b)
    program = build_program(cfg)
    host = {"audio": wav[..., None], "audio_valid": np.ones((b, n), bool),
            "audio_lengths": np.full((b,), n, np.int32)}
    t = bench.bench_train_step(program, cfg.train.mesh, host, iters=iters)
    seconds = n / model_cfg.sampling_rate
    return {"framework": jax_label(), "mode": mode, "params_M": bench.n_params(t.abstract.params),
            "batch": b, "seconds": seconds, "first_call_s": t.compile_s,
            "step_ms": t.mean_s * 1e3, "std_ms": t.std_s * 1e3,
            "samples_per_s": b / t.mean_s, "audio_s_per_s": b * seconds / t.mean_s,
            "mfu": bench.mfu(t.flops, t.mean_s, jax.device_count()),
            "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20}


def default_torch_python() -> str | None:
    """``$TRC_ORACLE_PYTHON``, else the oracle env's interpreter if it exists."""
    python = os.environ.get("TRC_ORACLE_PYTHON") or REPO / ".venv-oracle" / "bin" / "python"
    return str(python) if Path(python).exists() else None


def torch_rows(python: str, model_cfg: SnacModelConfig, wav: np.ndarray,
               train_wav: np.ndarray, args: Options) -> list[dict]:
    """The package's rows, from ``bench_snac_torch.py`` in the oracle interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, inputs, out = (Path(tmp) / n for n in ("config.json", "in.npz", "out.json"))
        cfg_path.write_text(json.dumps(model_cfg.published()))
        np.savez(inputs, codec=wav, train=train_wav)
        cmd = [python, str(REPO / "scripts" / "bench_snac_torch.py"), str(cfg_path),
               str(inputs), str(out), "--iters", str(args.iters),
               "--threads", str(args.torch_threads), "--modes", *args.modes,
               "--ffts", *map(str, PRESETS["finetune-24khz"].loss.stft_ffts)]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench_snac_torch.py exited with {proc.returncode}:\n"
                               f"{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


@dataclasses.dataclass(frozen=True)
class Options:
    model: Literal[tuple(sorted(MODEL_PRESETS))] = "24khz"
    """Model preset of tokenizer.snac.config.MODEL_PRESETS."""
    batch: int = 1
    """Encode / decode batch."""
    seconds: float = 4.0
    """Encode / decode length."""
    train_batch: int = 4
    """Train step batch."""
    train_seconds: float = 1.0
    """Train segment (rounded up to the codec's pad multiple)."""
    modes: tuple[Literal[tuple(MODES)], ...] = tuple(MODES)
    """Fine-tuning modes to time."""
    iters: int = 5
    """Timed calls after one warm-up."""
    dtype: Literal["float32", "bfloat16"] | None = None
    """Our compute dtype (default: the model preset's)."""
    torch: bool = True
    """Time the PyTorch package too (--no-torch leaves its rows out)."""
    torch_python: str | None = None
    """Interpreter with torch + snac (default: $TRC_ORACLE_PYTHON, else the oracle env's)."""
    torch_threads: int = os.cpu_count() or 1
    """torch's CPU threads."""
    json: Path | None = None
    """Also write the rows here."""


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    torch_python = args.torch_python or default_torch_python()
    model_cfg = MODEL_PRESETS[args.model]
    if args.dtype:
        model_cfg = dataclasses.replace(model_cfg, dtype=args.dtype)
    sr = model_cfg.sampling_rate
    wav = speech_like(args.batch, round(args.seconds * sr), sr)
    train_wav = speech_like(args.train_batch,
                            round_up(round(args.train_seconds * sr), model_cfg.pad_multiple),
                            sr, seed=1)
    print(f"backend: {bench.describe_backend()}; model {args.model}", flush=True)

    codec, train = codec_rows(model_cfg, wav, args.iters), []
    print("  jax encode/decode done", flush=True)
    for mode in args.modes:
        train.append(train_row(model_cfg, mode, train_wav, args.iters))
        print(f"  jax {mode}: {train[-1]['step_ms']:.0f} ms/step", flush=True)
    note = ""
    if not args.torch:
        note = "PyTorch rows left out (--no-torch)"
    elif not torch_python:
        note = ("PyTorch rows left out: no oracle env (bash scripts/setup_oracle_env.sh, "
                "or --torch-python)")
    else:
        for row in torch_rows(torch_python, model_cfg, wav, train_wav, args):
            (train if "mode" in row else codec).append(row)
        print("  torch done", flush=True)

    bench.print_table(codec, f"SNAC {args.model} encode / decode, eval mode (rtf = compute s "
                             f"/ audio s; first_call_s = compile for JAX)")
    bench.print_table(train, f"SNAC {args.model} fine-tuning step (L1 + MR-STFT, AdamW); "
                             f"seconds = segment length")
    if note:
        print(note, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": bench.describe_backend(), "model": args.model,
                       "codec": codec, "train_step": train, "note": note}, f, indent=2)


if __name__ == "__main__":
    main()
