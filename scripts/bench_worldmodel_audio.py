"""Benchmark the world model's audio components' train steps.

    uv run python scripts/bench_worldmodel_audio.py                         # tiny + cpu
    uv run python scripts/bench_worldmodel_audio.py --presets tiny cpu base --iters 3

For each preset of each model (the speaker encoder, SIVE, the audio CVAE over the
encoders of the same preset, and again with their outputs precomputed, and the vocoder:
each package's ``config.PRESETS``; ``--gan`` also times the CVAE's and the vocoder's GAN
steps): the train step exactly as
``python -m worldmodel.train <model>`` runs it (the program of the model's
``build_program``, state built and step jitted as ``common.train.loop.train`` does:
mesh, shardings, donation) on a synthetic batch with the pipeline's keys and layout
(left-padded audio, every row full). Columns: parameters, state init, compile time,
step time (mean and std over ``--iters``), samples/s, seconds of audio per second, MFU
(XLA's FLOPs over the device's peak; "-" where unknown, e.g. CPU), peak memory
(process-wide so far). Nothing is downloaded and no corpus is built: the speaker table
is ``--speakers`` synthetic names. Figures go to BENCHMARKS.md with device and date.
The vocoder's GAN step is timed with its discriminator started (the full step).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import tyro

from common import bench
from common.data.batching import collate_audio
from common.train.hardware import peak_memory_bytes
from worldmodel.audio.cvae.config import PRESETS as CVAE_PRESETS
from worldmodel.audio.cvae.training import build_program as cvae_program
from worldmodel.audio.sive.config import PRESETS as SIVE_PRESETS
from worldmodel.audio.sive.training import build_program as sive_program
from worldmodel.audio.speaker.config import PRESETS as SPEAKER_PRESETS
from worldmodel.audio.speaker.training import build_program as speaker_program
from worldmodel.audio.vocoder.config import PRESETS as VOCODER_PRESETS
from worldmodel.audio.vocoder.training import build_program as vocoder_program


@dataclasses.dataclass(frozen=True)
class Options:
    presets: tuple[str, ...] = ("tiny", "cpu")
    """Presets of each model to time (those a model lacks are skipped)."""
    iters: int = 5
    """Timed steps after one warm-up."""
    batch_size: int | None = None
    """Batch size (default: the preset's)."""
    speakers: int = 64
    """Size of the speaker table (the classifier's classes)."""
    gan: bool = False
    """Also time the vocoder's GAN step (discriminators started at step 0)."""
    json: Path | None = None
    """Also write the rows here."""


def speaker_row(name: str, args: Options) -> dict:
    cfg = SPEAKER_PRESETS[name]
    data = dataclasses.replace(
        cfg.data, batch_size=args.batch_size or cfg.data.batch_size,
        speakers=tuple(f"spk{i:03d}" for i in range(args.speakers)))
    cfg = dataclasses.replace(cfg, data=data)
    b, sr = data.batch_size, cfg.features.sample_rate
    n = round(data.segment_seconds * sr)
    rng = np.random.default_rng(0)
    batch = collate_audio(list(0.1 * rng.standard_normal((b, n)).astype(np.float32)), n,
                          (cfg.features.hop_length,))
    batch["speaker"] = rng.integers(0, args.speakers, b).astype(np.int32)
    batch["example_valid"] = np.ones(b, bool)
    t = bench.bench_train_step(speaker_program(cfg), cfg.train.mesh, batch, iters=args.iters)
    return _row("speaker-encoder", name, t, b, data.segment_seconds)


def _row(model: str, name: str, t, b: int, seconds: float) -> dict:
    # a GAN state's parameters: the generator's (the model that is kept)
    params = t.abstract.gen.params if hasattr(t.abstract, "gen") else t.abstract.params
    return {"model": model, "preset": name, "params_M": bench.n_params(params), "batch": b,
            "seconds": seconds, "init_s": t.init_s, "compile_s": t.compile_s,
            "step_ms": t.mean_s * 1e3, "std_ms": t.std_s * 1e3,
            "samples_per_s": b / t.mean_s, "audio_s_per_s": b * seconds / t.mean_s,
            "mfu": bench.mfu(t.flops, t.mean_s, jax.device_count()),
            "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20}


def vocoder_row(name: str, args: Options, gan: bool) -> dict:
    cfg = VOCODER_PRESETS[name]
    data = dataclasses.replace(cfg.data, batch_size=args.batch_size or cfg.data.batch_size)
    cfg = dataclasses.replace(cfg, data=data, adversarial=gan,
                              gan=dataclasses.replace(cfg.gan, disc_start_step=0))
    b, sr = data.batch_size, cfg.features.sample_rate
    n = round(data.segment_seconds * sr)
    rng = np.random.default_rng(0)
    batch = collate_audio(list(0.1 * rng.standard_normal((b, n)).astype(np.float32)), n,
                          (cfg.features.hop_length,))
    batch["example_valid"] = np.ones(b, bool)
    t = bench.bench_train_step(vocoder_program(cfg), cfg.train.mesh, batch, iters=args.iters)
    return _row("vocoder+gan" if gan else "vocoder", name, t, b, data.segment_seconds)


def _speech_batch(b: int, seconds: float, hop: int) -> dict:
    """``b`` full rows of ``seconds`` of noise on SIVE's 4-hop grid (the trainers'
    whole-utterance batches)."""
    n = round(seconds * 16000) // (4 * hop) * (4 * hop)
    rng = np.random.default_rng(0)
    batch = collate_audio(list(0.1 * rng.standard_normal((b, n)).astype(np.float32)), n,
                          (4 * hop,))
    batch["example_valid"] = np.ones(b, bool)
    return batch


def sive_row(name: str, args: Options, vocab: int = 64, tokens: int = 320) -> dict:
    """SIVE's step on batches of ``data.max_seconds``, ``vocab`` CTC classes and
    ``tokens`` phonemes per row (a synthetic table stands for the corpus's)."""
    cfg = SIVE_PRESETS[name]
    data = dataclasses.replace(
        cfg.data, batch_size=args.batch_size or cfg.data.batch_size,
        speakers=tuple(f"spk{i:03d}" for i in range(args.speakers)))
    cfg = dataclasses.replace(cfg, data=data,
                              encoder=dataclasses.replace(cfg.encoder, vocab=vocab))
    b, secs = data.batch_size, data.max_seconds
    batch = _speech_batch(b, secs, cfg.features.hop_length)
    rng = np.random.default_rng(1)
    batch["phonemes"] = rng.integers(1, vocab, (b, tokens)).astype(np.int32)
    batch["phonemes_valid"] = np.broadcast_to(np.arange(tokens) < tokens // 3, (b, tokens))
    batch["speaker"] = rng.integers(0, args.speakers, b).astype(np.int32)
    t = bench.bench_train_step(sive_program(cfg), cfg.train.mesh, batch, iters=args.iters)
    return _row("audio-sive", name, t, b, secs)


def cvae_row(name: str, args: Options, precomputed: bool = False, gan: bool = False) -> dict:
    """The CVAE's step over the SIVE and speaker encoders of the same preset (``tiny``
    where they lack it; random weights stand for the runs'): their forward passes are
    part of the step, as in training, unless ``precomputed`` (``--data.precomputed``:
    the batch carries their outputs, read from shards). ``gan``: the full GAN step with
    the preset's PatchGAN (``--gan``, the discriminator started)."""
    from flax import nnx

    from common.speech.content import ContentEncoder
    from common.speech.ecapa import EcapaTdnn

    cfg = CVAE_PRESETS[name]
    content = SIVE_PRESETS.get(name, SIVE_PRESETS["tiny"]).encoder
    speaker = SPEAKER_PRESETS.get(name, SPEAKER_PRESETS["tiny"]).model
    cfg = dataclasses.replace(
        cfg, sive_run="(bench)", speaker_run="(bench)", content=content, speaker=speaker,
        model=dataclasses.replace(cfg.model, content_dim=content.dim,
                                  speaker_dim=speaker.embed_dim),
        data=dataclasses.replace(cfg.data, batch_size=args.batch_size or cfg.data.batch_size),
        adversarial=gan, gan=dataclasses.replace(cfg.gan, disc_start_step=0))
    encoders = (nnx.state(ContentEncoder(content, rngs=nnx.Rngs(0))),
                nnx.state(EcapaTdnn(speaker, rngs=nnx.Rngs(0))))
    b, secs = cfg.data.batch_size, cfg.data.max_seconds
    batch = _speech_batch(b, secs, cfg.features.hop_length)
    frames = 1 + batch["audio"].shape[1] // cfg.features.hop_length
    batch["f0"] = np.full((b, frames), 150.0, np.float32)
    batch["voiced"] = np.ones((b, frames), bool)
    if precomputed:
        rng = np.random.default_rng(2)
        t4 = 1 + batch["audio"].shape[1] // (4 * cfg.features.hop_length)
        batch["sive_features"] = rng.standard_normal((b, t4, content.dim)).astype(np.float32)
        batch["speaker_embedding"] = rng.standard_normal((b, speaker.embed_dim)).astype(
            np.float32)
    t = bench.bench_train_step(cvae_program(cfg, encoders), cfg.train.mesh, batch,
                               iters=args.iters)
    model = "audio-cvae" + ("+gan" if gan else "") + (" (precomputed)" if precomputed else "")
    return _row(model, name, t, b, secs)


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    backend = bench.describe_backend()
    print(f"backend: {backend}")
    rows = []
    for name in args.presets:
        if name in SPEAKER_PRESETS:
            rows.append(speaker_row(name, args))
            print(f"  speaker-encoder {name}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
        for presets, row in ((SIVE_PRESETS, sive_row), (CVAE_PRESETS, cvae_row),
                             (CVAE_PRESETS, lambda n, a: cvae_row(n, a, precomputed=True))):
            if name in presets:
                rows.append(row(name, args))
                print(f"  {rows[-1]['model']} {name}: {rows[-1]['step_ms']:.1f} ms/step",
                      flush=True)
        if args.gan and name in CVAE_PRESETS:
            rows.append(cvae_row(name, args, gan=True))
            print(f"  {rows[-1]['model']} {name}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
        for gan in (False, True) if args.gan else (False,):
            if name in VOCODER_PRESETS:
                rows.append(vocoder_row(name, args, gan))
                print(f"  {rows[-1]['model']} {name}: {rows[-1]['step_ms']:.1f} ms/step",
                      flush=True)
    bench.print_table(rows, f"world-model audio train steps, state donated; {backend}")
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
