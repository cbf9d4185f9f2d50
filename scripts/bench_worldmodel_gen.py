"""Benchmark the world model's generative image components' train steps.

    uv run python scripts/bench_worldmodel_gen.py       # the image VAE, DiT and UNet, tiny
    uv run python scripts/bench_worldmodel_gen.py --presets tiny small base --gan --iters 3

For each preset of the image VAE (``worldmodel.image.vae.config.PRESETS``; ``--gan``
also times its GAN step with the PatchGAN started): the train step exactly as
``python -m worldmodel.train image-vae`` runs it (the program of ``build_program``,
state built and step jitted as ``common.train.loop.train`` does: mesh, shardings,
donation) on a synthetic batch of the pipeline's layout (``image [B, S, S, 3]`` in
[-1, 1]). Columns: parameters, state init, compile time, step time (mean and std over
``--iters``), images/s, MFU (XLA's FLOPs over the device's peak; "-" where unknown,
e.g. CPU), peak memory (process-wide so far).

For each preset of image diffusion (``worldmodel.image.diffusion.config.PRESETS``), with
the DiT and with the UNet: the train step of ``python -m worldmodel.train
image-diffusion`` (the frozen VAE's encoder included, as the command runs it: latents
are computed on the fly), on the digits VAE preset's autoencoder with random weights;
and ``sample_ms``, the time per image of sampling a batch (the preset's sampler and
steps, guidance 1, the VAE's decoder included), after compilation. Figures go to
BENCHMARKS.md with device and date.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import tyro

from common import bench
from common.train.hardware import peak_memory_bytes
from worldmodel.image.diffusion.config import PRESETS as DIFFUSION_PRESETS
from worldmodel.image.vae.config import PRESETS as VAE_PRESETS
from worldmodel.image.vae.training import build_program as vae_program


@dataclasses.dataclass(frozen=True)
class Options:
    presets: tuple[str, ...] = ("tiny",)
    """Presets to time (those a model lacks are skipped)."""
    iters: int = 5
    """Timed steps after one warm-up."""
    batch_size: int | None = None
    """Batch size (default: the preset's)."""
    gan: bool = False
    """Also time the image VAE's GAN step (the PatchGAN started at step 0)."""
    json: Path | None = None
    """Also write the rows here."""


def vae_row(name: str, args: Options, gan: bool) -> dict:
    cfg = VAE_PRESETS[name]
    train = dataclasses.replace(cfg.data.train,
                                batch_size=args.batch_size or cfg.data.train.batch_size)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=train),
                              adversarial=gan,
                              gan=dataclasses.replace(cfg.gan, disc_start_step=0))
    b, s = train.batch_size, train.size
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (b, s, s, cfg.model.in_channels)).astype(np.float32)}
    t = bench.bench_train_step(vae_program(cfg), cfg.train.mesh, batch, iters=args.iters)
    params = t.abstract.gen.params if hasattr(t.abstract, "gen") else t.abstract.params
    return {"model": "image-vae+gan" if gan else "image-vae", "preset": name,
            "params_M": bench.n_params(params), "batch": b, "size": s,
            "init_s": t.init_s, "compile_s": t.compile_s, "step_ms": t.mean_s * 1e3,
            "std_ms": t.std_s * 1e3, "images_per_s": b / t.mean_s,
            "mfu": bench.mfu(t.flops, t.mean_s, jax.device_count()), "sample_ms": None,
            "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20}


def diffusion_row(name: str, denoiser: str, args: Options) -> dict:
    import time

    from flax import nnx

    from worldmodel.image.diffusion.data import with_vae
    from worldmodel.image.diffusion.training import build_program, generate
    from worldmodel.image.vae.model import ImageVae

    cfg = DIFFUSION_PRESETS[name]
    train = dataclasses.replace(cfg.data.train,
                                batch_size=args.batch_size or cfg.data.train.batch_size)
    vae = VAE_PRESETS["digits"].model
    cfg = with_vae(dataclasses.replace(cfg, denoiser=denoiser,
                                       data=dataclasses.replace(cfg.data, train=train)),
                   vae, "(random weights)")
    program = build_program(cfg, vae=nnx.state(ImageVae(vae, rngs=nnx.Rngs(0))))
    b, s = train.batch_size, train.size
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32),
             "label": rng.integers(0, 10, b).astype(np.int32)}
    t = bench.bench_train_step(program, cfg.train.mesh, batch, iters=args.iters)
    model = program.model(t.state)
    labels, key = batch["label"], jax.random.key(0)
    generate(model, cfg, labels, key)  # compiles
    start = time.perf_counter()
    for _ in range(args.iters):
        generate(model, cfg, labels, key)
    sample_s = (time.perf_counter() - start) / args.iters
    return {"model": f"{denoiser}-{cfg.objective}", "preset": name,
            "params_M": bench.n_params(t.abstract.params.denoiser), "batch": b, "size": s,
            "init_s": t.init_s, "compile_s": t.compile_s, "step_ms": t.mean_s * 1e3,
            "std_ms": t.std_s * 1e3, "images_per_s": b / t.mean_s,
            "mfu": bench.mfu(t.flops, t.mean_s, jax.device_count()),
            "sample_ms": sample_s / b * 1e3,
            "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20}


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    backend = bench.describe_backend()
    print(f"backend: {backend}")
    rows = []
    for name in args.presets:
        for gan in (False, True) if args.gan else (False,):
            if name in VAE_PRESETS:
                rows.append(vae_row(name, args, gan))
                print(f"  {rows[-1]['model']} {name}: {rows[-1]['step_ms']:.1f} ms/step",
                      flush=True)
        if name in DIFFUSION_PRESETS:
            for denoiser in ("dit", "unet"):
                rows.append(diffusion_row(name, denoiser, args))
                print(f"  {rows[-1]['model']} {name}: {rows[-1]['step_ms']:.1f} ms/step",
                      flush=True)
    bench.print_table(rows, f"world-model generative train steps, state donated; {backend}")
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
