"""The PyTorch ``snac`` package's side of ``scripts/bench_snac.py``.

Runs in the oracle environment (torch + snac, ``bash scripts/setup_oracle_env.sh``), not
the uv one; ``bench_snac.py`` calls it so that both frameworks are measured in one run,
on the same inputs and the same model config:

    .venv-oracle/bin/python scripts/bench_snac_torch.py CONFIG_JSON INPUTS_NPZ OUT_JSON \\
        [--iters N] [--threads T] [--modes decoder-only full]

CONFIG_JSON is the published ``config.json`` dict; INPUTS_NPZ holds ``codec`` ``[B, N]``
(encode / decode) and ``train`` ``[B, N]`` (the train step's batch). Writes a JSON list
of rows with the same keys as the JAX rows of ``bench_snac.py``.

What is timed, matching the JAX side:
- encode: ``SNAC.encode`` under ``torch.inference_mode`` (padding included);
- decode: ``SNAC.decode`` of those codes (the package's noise blocks draw noise on every
  call; ours are off at inference, a few elementwise ops);
- train: forward, L1 + multi-resolution STFT loss (spectral convergence + log magnitude,
  Hann windows, hop n_fft / 4, the mean over resolutions: the loss of
  ``tokenizer.snac.training``), backward, AdamW. ``decoder-only`` runs the encoder and
  quantizer without gradients and updates the decoder; ``full`` trains everything (the
  package has no commitment / codebook losses; ours adds them, a negligible cost).
"""

# argparse, not tyro like the other benchmarks: this runs in the oracle environment
# (tests/oracles/requirements.txt), which has no tyro, and only bench_snac.py calls it.
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
from snac import SNAC


def timed(fn, iters: int, warmup: int = 1) -> tuple[float, float, float]:
    """``(first_call_s, mean_s, std_s)`` of ``fn()`` over ``iters`` calls after warm-up."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, float(np.mean(times)), float(np.std(times))


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` (reset by exec, unlike
    ``ru_maxrss``, which a subprocess inherits from the parent it was forked from)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stft_loss(pred: torch.Tensor, target: torch.Tensor, ffts: list[int]) -> torch.Tensor:
    """``pred, target [B, N]``: mean over resolutions of (spectral convergence + mean
    |log(S_t + 1e-7) - log(S_p + 1e-7)|), with zero-padded centred frames."""
    total = 0.0
    for n_fft in ffts:
        kw = dict(n_fft=n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                  center=True, pad_mode="constant", return_complex=True)
        s_p, s_t = torch.stft(pred, **kw).abs(), torch.stft(target, **kw).abs()
        sc = torch.linalg.norm(s_t - s_p) / torch.linalg.norm(s_t).clamp_min(1e-8)
        log_mag = (torch.log(s_t + 1e-7) - torch.log(s_p + 1e-7)).abs().mean()
        total = total + sc + log_mag
    return total / len(ffts)


def train_step(model: SNAC, wav: torch.Tensor, mode: str, ffts: list[int]):
    """A closure running one optimiser step on ``wav [B, N]``."""
    decoder_only = mode == "decoder-only"
    params = list((model.decoder if decoder_only else model).parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.8, 0.99))  # DAC's AdamW
    x = wav[:, None, :]
    n = wav.shape[-1]

    def step():
        if decoder_only:
            with torch.no_grad():
                z_q, _ = model.quantizer(model.encoder(model.preprocess(x)))
        else:
            z_q, _ = model.quantizer(model.encoder(model.preprocess(x)))
        recon = model.decoder(z_q)[:, 0, :n]
        loss = (recon - wav).abs().mean() + stft_loss(recon, wav, ffts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--modes", nargs="*", default=["decoder-only", "full"])
    p.add_argument("--ffts", type=int, nargs="+", default=[1024, 2048, 4096])
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with open(args.config) as f:
        config = json.load(f)
    model = SNAC(**config)
    sr = config["sampling_rate"]
    label = f"torch {torch.__version__} cpu, {args.threads} threads"
    rows = []
    with np.load(args.inputs) as inputs:
        wav = torch.from_numpy(inputs["codec"])
        train_wav = torch.from_numpy(inputs["train"])
    b, audio_s = wav.shape[0], wav.shape[0] * wav.shape[1] / sr

    def rtf_row(op, fn):
        first, mean, std = timed(fn, args.iters)
        return {"framework": label, "op": op, "batch": b, "audio_s": audio_s,
                "first_call_s": first, "ms": mean * 1e3, "std_ms": std * 1e3,
                "rtf": mean / audio_s, "x_realtime": audio_s / mean}

    model.eval()
    with torch.inference_mode():
        x = wav[:, None, :]
        rows.append(rtf_row("encode", lambda: model.encode(x)))
        codes = model.encode(x)
        rows.append(rtf_row("decode", lambda: model.decode(codes)))
    model.train()
    tb, seconds = train_wav.shape[0], train_wav.shape[1] / sr
    for mode in args.modes:
        first, mean, std = timed(train_step(model, train_wav, mode, args.ffts), args.iters)
        rows.append({"framework": label, "mode": mode, "batch": tb, "seconds": seconds,
                     "first_call_s": first, "step_ms": mean * 1e3, "std_ms": std * 1e3,
                     "samples_per_s": tb / mean, "audio_s_per_s": tb * seconds / mean,
                     "peak_mem_MB": peak_rss_mb()})
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
