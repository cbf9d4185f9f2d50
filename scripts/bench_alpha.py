"""Benchmark the alpha audio codec: its GAN train step, and encode / decode speed.

    uv run python scripts/bench_alpha.py                              # tiny + small
    uv run python scripts/bench_alpha.py --presets tiny --iters 3     # a quick CPU run
    uv run python scripts/bench_alpha.py --presets small base --seconds 2 --json alpha.json
    uv run python scripts/bench_alpha.py --presets tiny --causal      # + streaming chunks
    uv run python scripts/bench_alpha.py --presets tiny --phases gan pre-start
    uv run python scripts/bench_alpha.py --presets cpu --phases generator

Two tables per run, for each preset of ``tokenizer.alpha.config.PRESETS``:

1. The train step exactly as ``python -m tokenizer.alpha.train`` runs it: the program of
   ``tokenizer.alpha.training.build_program``, its state built and the step jitted as
   ``common.train.loop.train`` does (mesh, state shardings, donation), on a synthetic
   batch with the pipeline's keys and layout. Phase ``gan`` has the discriminator active
   (``gan.disc_start_step=0``); phase ``pre-start`` (on request: one more compile) is the
   step before the discriminator starts, which still runs both discriminator passes and
   their backward (only the discriminator's update is skipped), so it costs about as
   much; phase ``generator`` (on request) is the warm-up step a run takes before a
   fixed start step, the generator alone (what the ``cpu`` preset runs throughout).
   Columns: parameters (generator / discriminator), state init (trace, compile,
   run of the init), compile time of the step, step time
   (mean and std over ``--iters``), samples/s, seconds of audio per second, MFU (XLA's
   FLOP count over the device's peak; "-" where the peak is unknown, e.g. on CPU) and
   peak memory (process-wide so far: device peak on accelerators, max RSS on CPU).
2. Encode and decode in eval mode (jitted ``AlphaCodec.encode`` / ``decode``, the weights
   of table 1's generator) on a batch: the real-time factor RTF = compute seconds over
   audio seconds (< 1 is faster than real time) and its inverse, "x real time". With a
   causal codec (``--causal``, or a causal preset) also the streaming path
   (``tokenizer.alpha.streaming.StreamingCodec``): the latency of one chunk of
   ``--chunk-frames`` frames, batch 1.

Nothing is downloaded and the corpus is not built: the data-dependent field
``quantizer.phoneme_vocab`` comes from ``--phoneme-vocab``. Figures go to BENCHMARKS.md
with the device, versions and date.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro
from flax import nnx

from common import bench
from common.data.batching import collate_audio, left_pad_tokens, round_up
from common.train.hardware import peak_memory_bytes
from tokenizer.alpha.config import PRESETS, AlphaConfig
from tokenizer.alpha.model import AlphaCodec
from tokenizer.alpha.streaming import StreamingCodec
from tokenizer.alpha.training import build_program

# gan.disc_start_step of each phase; "generator" times the warm-up step (the
# discriminator not run at all), what a run executes before a fixed start step.
PHASES = {"gan": 0, "pre-start": 2**30, "generator": 2**30}
PHONEMES_PER_SECOND = 12  # typical espeak output; sets the CTC targets' length


@dataclasses.dataclass(frozen=True)
class Options:
    presets: tuple[Literal[tuple(sorted(PRESETS))], ...] = ("tiny", "small")
    """Presets of tokenizer.alpha.config.PRESETS to time."""
    phases: tuple[Literal[tuple(PHASES)], ...] = ("gan",)
    """gan: discriminator active; pre-start: before it starts (each compiles its own step)."""
    iters: int = 5
    """Timed calls after one warm-up."""
    batch_size: int | None = None
    """Batch size (default: the preset's)."""
    seconds: float | None = None
    """Utterance length (default: the preset's data.max_seconds)."""
    phoneme_vocab: int = 64
    """Stage-1 codebook size (the data's vocabulary in a real run)."""
    causal: bool = False
    """Benchmark the causal variant of each preset (and its streaming)."""
    chunk_frames: int = 10
    """Streaming chunk, in frames."""
    json: Path | None = None
    """Also write the rows here."""


def preset_config(name: str, args: Options) -> AlphaConfig:
    """The preset with what ``resolve_data`` and the command line would fill in."""
    cfg = PRESETS[name]
    q = cfg.quantizer
    if q.kind == "phoneme_bsq" and not q.phoneme_vocab:
        q = dataclasses.replace(q, phoneme_vocab=args.phoneme_vocab)
    codec = dataclasses.replace(cfg.codec, causal=True) if args.causal else cfg.codec
    data = dataclasses.replace(cfg.data, batch_size=args.batch_size or cfg.data.batch_size,
                               max_seconds=args.seconds or cfg.data.max_seconds)
    return dataclasses.replace(cfg, quantizer=q, codec=codec, data=data)


def synthetic_batch(cfg: AlphaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A whole-utterance batch as ``common.data.pipeline`` yields it (same keys, dtypes,
    left padding, ``N`` a multiple of the hop). Every row fills the bucket: the step's
    cost depends on the padded shape only, and audio seconds are then exact."""
    rng = np.random.default_rng(seed)
    b, sr, hop = cfg.data.batch_size, cfg.sample_rate, cfg.codec.hop
    n = round_up(round(cfg.data.max_seconds * sr), hop)
    t = np.arange(n) / sr
    # Harmonics on a wandering pitch plus noise: speech-like spectra for the mel losses.
    f0 = rng.uniform(90, 250, (b, 1)) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0, axis=1) / sr
    wavs = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1
    wavs = (wavs + 0.01 * rng.standard_normal((b, n))).astype(np.float32)
    batch = collate_audio(list(wavs), n, (hop,))
    n_ph = [max(1, int(cfg.data.max_seconds * PHONEMES_PER_SECOND * rng.uniform(0.8, 1.0)))
            for _ in range(b)]
    vocab = max(cfg.quantizer.phoneme_vocab, 2)
    seqs = [rng.integers(1, vocab, k).astype(np.int32) for k in n_ph]  # 0 is the blank
    batch["phonemes"], batch["phonemes_valid"] = left_pad_tokens(seqs, round_up(max(n_ph), 16))
    batch["example_valid"] = np.ones(b, bool)
    return batch


def bench_train_step(name: str, cfg: AlphaConfig, phase: str, iters: int):
    """One row of table 1, and the generator after the timed steps."""
    gan = dataclasses.replace(cfg.gan, disc_start_step=PHASES[phase], disc_start_loss=None)
    program = build_program(dataclasses.replace(cfg, gan=gan))
    if phase == "generator":
        if program.warmup_step is None:
            raise RuntimeError(f"{name}: no generator-only warm-up step to time")
        program = dataclasses.replace(program, step=program.warmup_step)
    host = synthetic_batch(cfg)
    t = bench.bench_train_step(program, cfg.train.mesh, host, iters=iters)
    m = jax.device_get(t.metrics)
    if bool(m["disc/started"]) != (phase == "gan"):  # the phase is what the row says
        raise RuntimeError(f"{name} {phase}: disc/started={m['disc/started']}")
    b, seconds = cfg.data.batch_size, host["audio"].shape[1] / cfg.sample_rate
    row = {"preset": name, "phase": phase,
           "gen_M": bench.n_params(t.abstract.gen.params),
           "disc_M": bench.n_params(t.abstract.disc.params),
           "batch": b, "seconds": seconds, "init_s": t.init_s, "compile_s": t.compile_s,
           "step_ms": t.mean_s * 1e3, "std_ms": t.std_s * 1e3,
           "samples_per_s": b / t.mean_s, "audio_s_per_s": b * seconds / t.mean_s,
           "mfu": bench.mfu(t.flops, t.mean_s, jax.device_count()),
           "peak_mem_MB": (peak_memory_bytes() or 0) / 2**20,
           "skipped": int(program.nonfinite_total(t.state))}
    return row, program.model(t.state), host


def rtf_row(name: str, mode: str, op: str, batch: int, audio_s: float, fn, *args,
            iters: int) -> dict:
    timing, mean_s, std_s = bench.timed(fn, *args, iters=iters)
    return {"preset": name, "mode": mode, "op": op, "batch": batch, "audio_s": audio_s,
            "compile_s": timing.compile_s, "ms": mean_s * 1e3, "std_ms": std_s * 1e3,
            "rtf": mean_s / audio_s, "x_realtime": audio_s / mean_s}


def bench_codec(name: str, codec: AlphaCodec, host: dict, args: Options) -> list[dict]:
    """Table 2's rows: offline encode and decode, and streaming chunks if causal."""
    cfg = codec.cfg
    codec.eval()
    graphdef, state = nnx.split(codec)
    # jax.jit over the split state rather than nnx.jit: no per-call graph traversal in
    # the timings, and the weights are not baked into the program as constants.
    encode = jax.jit(lambda s, w, v: nnx.merge(graphdef, s).encode(w, v))
    decode = jax.jit(lambda s, c, fv: nnx.merge(graphdef, s).decode(c, fv))
    wav, valid = jax.device_put(host["audio"]), jax.device_put(host["audio_valid"])
    b, audio_s = wav.shape[0], wav.shape[0] * wav.shape[1] / cfg.sample_rate
    # Each op is timed before anything else calls it, so its first call is its compile.
    rows = [rtf_row(name, "offline", "encode", b, audio_s, encode, state, wav, valid,
                    iters=args.iters)]
    codes, frame_valid = encode(state, wav, valid)
    rows.append(rtf_row(name, "offline", "decode", b, audio_s, decode, state, codes,
                        frame_valid, iters=args.iters))
    if cfg.codec.causal:
        k = args.chunk_frames
        stream = StreamingCodec(codec, batch=1, chunk_frames=k)
        chunk = wav[:1, -k * cfg.codec.hop:]
        chunk_s = k * cfg.codec.hop / cfg.sample_rate
        mode, enc = f"stream {k} frames", stream.init_encoder()
        rows.append(rtf_row(name, mode, "encode", 1, chunk_s, stream.encode_chunk, enc, chunk,
                            iters=args.iters))
        _, chunk_codes = stream.encode_chunk(enc, chunk)
        rows.append(rtf_row(name, mode, "decode", 1, chunk_s, stream.decode_chunk,
                            stream.init_decoder(), chunk_codes, iters=args.iters))
    return rows


def main() -> None:
    args = tyro.cli(Options, description=__doc__.split("\n\n")[0])
    backend = bench.describe_backend()
    print(f"backend: {backend}")

    train_rows, codec_rows = [], []
    failed = []
    for name in args.presets:
        cfg = preset_config(name, args)
        codec = host = None
        try:
            for phase in args.phases:
                row, gen, batch = bench_train_step(name, cfg, phase, args.iters)
                train_rows.append(row)
                if codec is None:  # encode / decode use the first phase's generator
                    codec, host = gen, batch
                print(f"  {name} {phase}: {row['step_ms']:.1f} ms/step", flush=True)
            codec_rows += bench_codec(name, codec, host, args)
            print(f"  {name}: encode/decode done", flush=True)
        except jax.errors.JaxRuntimeError as e:  # e.g. out of memory: keep the other rows
            msg = str(e).splitlines()[0][:160]
            failed.append(f"{name}: {msg}")
            print(f"  {name} failed: {msg} (try --batch-size / --seconds)", flush=True)

    bench.print_table(train_rows, f"alpha GAN train step (generator + discriminator, AdamW "
                                  f"each), state donated; {backend}")
    bench.print_table(codec_rows, f"alpha encode / decode, eval mode (rtf = compute s / "
                                  f"audio s; compile_s = first call); {backend}")
    for line in failed:
        print(f"failed: {line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend, "train_step": train_rows, "codec": codec_rows,
                       "failed": failed},
                      f, indent=2)


if __name__ == "__main__":
    main()
