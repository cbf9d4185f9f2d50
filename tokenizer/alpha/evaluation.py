"""Evaluating an alpha codec on held-out speech: the library behind
``python -m tokenizer.alpha.eval``.

``evaluate`` reconstructs every utterance (eval mode, whole utterances, left-padded
batches) and reports, averaged over utterances: multi-scale mel distance (the training
loss's scales) and multi-resolution STFT distance (spectral convergence + log
magnitude), SI-SDR, wide-band PESQ and STOI (the ``eval`` dependency group; skipped with
a message without it); the bitrate; per code stream the codebook usage (share of codes
used) and perplexity; and for the two-stage quantizer the phoneme error rate / accuracy
of the stage-1 codes read as CTC predictions (greedy) against the utterances' phonemes.
``eval_config`` points a run's config at the evaluated data; ``print_report`` prints it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from common.bench import print_table
from common.data.pipeline import iterate_eval
from common.data.sources import open_source
from common.data.vocab import Vocab
from common.losses.spectral import multi_resolution_stft_loss, multi_scale_mel_loss
from tokenizer.alpha import metrics as M
from tokenizer.alpha.components.quantizers.base import usage_metrics
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.data import pipeline_config
from tokenizer.alpha.inference import AlphaTokenizer
from tokenizer.alpha.model import AlphaCodec, bitrate

log = logging.getLogger(__name__)


def _phoneme_vocab(cfg: AlphaConfig, source_path: str) -> str | None:
    """The stage-1 vocabulary to score against: the training run's, else the evaluated
    corpus's own; None (phoneme accuracy skipped) when neither fits the codebook."""
    if cfg.quantizer.kind != "phoneme_bsq":
        return None
    for path in (cfg.data.phoneme_vocab, os.path.join(source_path, "phoneme_vocab.json")):
        if path and os.path.isfile(path):
            if len(Vocab.load(path)) == cfg.quantizer.phoneme_vocab:
                return path
            log.warning("%s has %d symbols, the stage-1 codebook %d: not this codec's "
                        "vocabulary", path, len(Vocab.load(path)), cfg.quantizer.phoneme_vocab)
    log.warning("no phoneme vocabulary matching the codec: phoneme accuracy skipped")
    return None


def eval_config(cfg: AlphaConfig, *, kind: str | None, path: str | None, batch_size: int,
                max_seconds: float) -> tuple[AlphaConfig, str | None]:
    """The run's config pointed at the evaluated data, and the vocab to score with."""
    source = cfg.data.source
    if kind or path:
        source = dataclasses.replace(source, kind=kind or source.kind, path=path or "")
    vocab = _phoneme_vocab(cfg, source.path)
    buckets = (*(s for s in (1.0, 2.0, 4.0, 8.0, 16.0) if s < max_seconds), max_seconds)
    data = dataclasses.replace(cfg.data, source=source, phoneme_vocab=vocab or "",
                               batch_size=batch_size, max_seconds=max_seconds,
                               bucket_seconds=buckets, max_tokens=None, workers=0)
    return dataclasses.replace(cfg, data=data), vocab


def _batch_fn(codec: AlphaCodec, cfg: AlphaConfig):
    """Jitted ``(audio, valid, lengths) -> recon, codes, frame_valid, mel [B], stft [B]``."""
    graphdef, state = nnx.split(codec)

    def per_row(r, t, n):
        mel, _ = multi_scale_mel_loss(r[None], t[None], sample_rate=cfg.sample_rate,
                                      n_ffts=cfg.loss.mel_n_ffts, n_mels=cfg.loss.mel_n_mels,
                                      lengths=n[None], padding_side="left")
        stft, _ = multi_resolution_stft_loss(r[None], t[None], lengths=n[None],
                                             padding_side="left")
        return mel, stft

    @jax.jit
    def run(state, wav, valid, lengths):
        out = nnx.merge(graphdef, state)(wav, valid)
        mel, stft = jax.vmap(per_row)(out.recon, wav, lengths)
        codes = jnp.where(out.frame_valid[..., None], out.quant.codes, 0)
        return out.recon, codes, out.frame_valid, mel, stft

    return lambda *a: run(state, *a)


def evaluate(tok: AlphaTokenizer, cfg: AlphaConfig, *, split: str, vocab: str | None,
             max_utterances: int | None = None, perceptual: bool = True) -> dict:
    """Every utterance of ``split`` (or the first ``max_utterances``) -> the report dict."""
    have = M.perceptual_available()
    if perceptual and not all(have.values()):
        log.warning("PESQ/STOI skipped: %s not installed (uv sync --group eval)",
                    " and ".join(k for k, v in have.items() if not v))
    source = open_source(cfg.data.source, split)
    pcfg = dataclasses.replace(pipeline_config(cfg), phoneme_vocab=vocab, worker_count=0)
    step_fn = _batch_fn(tok.codec, cfg)
    sizes = tok.codebook_sizes
    counts = [np.zeros(n, np.int64) for n in sizes]
    rows: dict[str, list[float]] = {k: [] for k in ("mel", "stft", "si_sdr", "pesq", "stoi")}
    edits = ref_len = seconds = 0
    n_utts = 0
    total = min(len(source), max_utterances or len(source))
    it = iterate_eval(source, pcfg)
    bar = tqdm(total=total, desc="evaluating", unit="utt")
    started = time.perf_counter()
    try:
        for batch in it:
            recon, codes, fv, mel, stft = jax.device_get(step_fn(
                batch["audio"], batch["audio_valid"], batch["audio_lengths"]))
            for b in np.flatnonzero(batch["example_valid"]):
                if n_utts >= total:
                    break
                keep = batch["audio_valid"][b]
                ref, est = batch["audio"][b, keep, 0], recon[b, keep, 0]
                rows["mel"].append(float(mel[b]))
                rows["stft"].append(float(stft[b]))
                rows["si_sdr"].append(M.si_sdr(ref, est))
                if perceptual:
                    rows["pesq"].append(M.pesq_wb(ref, est, cfg.sample_rate))
                    rows["stoi"].append(M.stoi(ref, est, cfg.sample_rate))
                c = codes[b, fv[b]]
                for s, n in enumerate(sizes):
                    counts[s] += np.bincount(c[:, s], minlength=n)
                if vocab is not None and "phonemes" in batch:
                    target = batch["phonemes"][b, batch["phonemes_valid"][b]]
                    edits += M.edit_distance(M.ctc_greedy(c[:, 0]), target.tolist())
                    ref_len += len(target)
                seconds += ref.size / cfg.sample_rate
                n_utts += 1
                bar.update()
            if n_utts >= total:
                break
    finally:
        bar.close()
        getattr(it, "close", lambda: None)()
    if not n_utts:
        raise ValueError(f"no utterances to evaluate in split {split!r} of "
                         f"{cfg.data.source.path or cfg.data.source.kind}")

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    report = {
        "utterances": n_utts, "seconds": round(seconds, 2),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "mel_distance": mean(rows["mel"]), "stft_distance": mean(rows["stft"]),
        "si_sdr_db": mean(rows["si_sdr"]), "pesq_wb": mean(rows["pesq"]),
        "stoi": mean(rows["stoi"]),
        "pesq_scored": sum(x is not None for x in rows["pesq"]),
        # unreadable, too long (> max_seconds) or without a transcript, by reason
        "skipped": dict(getattr(getattr(it, "stats", None), "skipped", {})),
        "bitrate_bps": bitrate(cfg), "frame_rate_hz": cfg.frame_rate,
        "streams": {},
    }
    for name, n, cnt in zip(tok.streams, sizes, counts, strict=True):
        u = {k: float(v) for k, v in usage_metrics(jnp.asarray(cnt, jnp.float32)).items()}
        report["streams"][name] = {"codebook_size": n, "usage": u["usage"],
                                   "perplexity": u["perplexity"]}
    if ref_len:
        report["phoneme_error_rate"] = edits / ref_len
        report["phoneme_accuracy"] = max(0.0, 1.0 - edits / ref_len)
    return report


def print_report(report: dict, title: str) -> None:
    scalars = {k: v for k, v in report.items() if k != "streams"}
    print_table([{"metric": k, "value": v} for k, v in scalars.items()], title)
    print_table([{"stream": k, **v} for k, v in report["streams"].items()], "code streams")
