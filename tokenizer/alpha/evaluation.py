"""Evaluating an alpha codec on held-out speech: the library behind
``python -m tokenizer.alpha.eval``.

``evaluate`` reconstructs every utterance (eval mode, whole utterances, left-padded
batches; the last, partial batch is padded and its padding rows masked out, so a split
smaller than a batch works) and reports, averaged over utterances: multi-scale mel
distance (the training loss's scales) and multi-resolution STFT distance (spectral
convergence + log magnitude), SI-SDR, wide-band PESQ and STOI (the ``eval`` dependency
group; skipped with a message without it); the bitrate; per code stream the codebook
usage (share of codes used) and perplexity; and for the two-stage quantizer the phoneme
error rate / accuracy of the stage-1 codes read as CTC predictions (greedy) against the
utterances' phonemes (their own, or their text phonemized by espeak-ng as training does,
``common.data.phonemize``). Plain audio (no transcripts, or some missing) is evaluated
all the same: the phoneme scores cover the utterances that have phonemes, and
``phoneme_note`` says why some or all are not scored. Broken files are skipped and
counted by the shared policy (``common.data.bad_input``).

``open_eval_source`` opens a split ("" for the whole source); ``eval_config`` points a
run's config at the evaluated data; ``print_report`` prints the report.
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

from common.audio import quality as M
from common.bench import print_table
from common.data.bad_input import SkipStats
from common.data.phonemize import record_phonemes
from common.data.pipeline import iterate_eval, source_durations
from common.data.records import DataError
from common.data.source_base import RecordSource
from common.data.sources import SourceConfig, open_source
from common.data.transforms import tokenize
from common.data.vocab import Vocab
from common.losses.ctc_decode import ctc_greedy, edit_distance
from common.losses.spectral import multi_resolution_stft_loss, multi_scale_mel_loss
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
    return None  # ``evaluate`` says that phoneme accuracy is not scored, and why


ALL_SPLITS = ("train", "validation", "test")


def open_eval_source(cfg: SourceConfig, split: str, *, or_all: bool = False
                     ) -> tuple[RecordSource, str]:
    """``(records, split)``: ``split`` of the source, or all of it for ``""`` (a folder's
    every subfolder split; otherwise its train, validation and test splits together).
    ``or_all``: a source without ``split`` (a plain folder has only "train") is
    evaluated whole, and the log says so."""
    if split:
        try:
            return open_source(cfg, split), split
        except DataError as e:
            if not or_all:
                raise
            log.info("%s; evaluating all of it (--split NAME picks one)", e)
    where = cfg.path or cfg.kind
    if cfg.kind == "folder":
        from common.data import hf  # datasets: only folder sources need it

        return hf.audio_folder(cfg.path, None, bad=cfg.bad_input,
                               probe_durations=cfg.probe_durations,
                               cache_dir=cfg.cache_dir), ""
    parts, errors = [], []
    for name in ALL_SPLITS:
        try:
            parts.append(open_source(cfg, name))
        except DataError as e:  # a layout without this split (LJSpeech: only "train")
            errors.append(e)
    if not parts:
        raise errors[0]
    stats, records, seen = SkipStats(), [], set()
    for part in parts:
        stats.skipped.update(part.load_stats.skipped)
        stats.notes.update(part.load_stats.notes)
        records += [r for r in part if r["id"] not in seen]
        seen.update(r["id"] for r in part)
    return RecordSource(records, f"{where}:all", load_stats=stats), ""


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


def _phoneme_targets(cfg: AlphaConfig, source: RecordSource, vocab: str | None
                     ) -> tuple[Vocab | None, str | None]:
    """The vocabulary to score stage 1 with, or None and why not."""
    if cfg.quantizer.kind != "phoneme_bsq":
        return None, f"the {cfg.quantizer.kind} quantizer has no phoneme stream"
    if vocab is None:
        return None, "no phoneme vocabulary matching the codec's stage-1 codebook"
    if not any(r["phonemes"] or r["text"] for r in source):
        return None, "the evaluated audio has no transcripts (phonemes or text)"
    return Vocab.load(vocab), None


def _check_lengths(source: RecordSource, max_seconds: float, where: str) -> None:
    """Fail, saying what to change, when no utterance is short enough to evaluate."""
    durations = source_durations(source)
    if len(durations) and not (durations <= max_seconds).any():
        raise ValueError(f"all {len(durations)} utterances of {where} are longer than "
                         f"--max-seconds {max_seconds} (the shortest is "
                         f"{durations.min():.1f} s): raise --max-seconds")


def evaluate(tok: AlphaTokenizer, cfg: AlphaConfig, *, split: str, vocab: str | None,
             max_utterances: int | None = None, perceptual: bool = True,
             source: RecordSource | None = None) -> dict:
    """Every utterance of ``split`` (or the first ``max_utterances``) -> the report dict.
    ``source``: the records of that split, when already open (``open_eval_source``)."""
    have = M.perceptual_available()
    if perceptual and not all(have.values()):
        log.warning("PESQ/STOI skipped: %s not installed (uv sync --group eval)",
                    " and ".join(k for k, v in have.items() if not v))
    if source is None:
        source, split = open_eval_source(cfg.data.source, split)
    where = f"split {split!r} of {cfg.data.source.path or cfg.data.source.kind}"
    if not len(source):
        raise ValueError(f"no utterances to evaluate in {where} "
                         f"({source.load_stats.summary()})")
    _check_lengths(source, cfg.data.max_seconds, where)
    targets, phoneme_note = _phoneme_targets(cfg, source, vocab)
    language = cfg.data.source.language
    if phoneme_note:
        log.warning("phoneme accuracy not scored: %s", phoneme_note)
    # Transcripts are read from the records (by the plan's indices), not batched by the
    # pipeline: it would skip every utterance without one, and plain audio has none.
    # Text-only ones are phonemized as the training pipeline does.
    pcfg = dataclasses.replace(pipeline_config(cfg), phoneme_vocab=None, phonemize=False,
                               worker_count=0)
    step_fn = _batch_fn(tok.codec, cfg)
    sizes = tok.codebook_sizes
    counts = [np.zeros(n, np.int64) for n in sizes]
    rows: dict[str, list[float]] = {k: [] for k in ("mel", "stft", "si_sdr", "pesq", "stoi")}
    edits = ref_len = scored = seconds = 0
    n_utts = 0
    total = min(len(source), max_utterances or len(source))
    it = iterate_eval(source, pcfg)
    bar = tqdm(total=total, desc="evaluating", unit="utt")
    started = time.perf_counter()
    try:
        for position, batch in enumerate(it):
            indices = it.plan[position]["indices"]
            recon, codes, fv, mel, stft = jax.device_get(step_fn(
                batch["audio"], batch["audio_valid"], batch["audio_lengths"]))
            for b in np.flatnonzero(batch["example_valid"]):  # padding rows are not
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
                phonemes = ""
                if targets is not None:
                    phonemes, _ = record_phonemes(source[int(indices[b])], language)
                if phonemes:
                    target = tokenize(phonemes, targets)
                    edits += edit_distance(ctc_greedy(c[:, 0]), target.tolist())
                    ref_len += len(target)
                    scored += 1
                seconds += ref.size / cfg.sample_rate
                n_utts += 1
                bar.update()
            if n_utts >= total:
                break
    finally:
        bar.close()
        getattr(it, "close", lambda: None)()
    stats = getattr(it, "stats", None)
    if not n_utts:
        raise ValueError(f"no utterances to evaluate in {where}: "
                         f"{stats.summary() if stats else 'every one was skipped'}")

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
        # unreadable, too long (> max_seconds), ... by reason (common.data.bad_input)
        "skipped": dict(getattr(stats, "skipped", {})),
        # used after a fix (downmixed, resampled), by kind
        "notes": dict(getattr(stats, "notes", {})),
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
        report["phoneme_scored"] = scored
    if scored < n_utts and targets is not None:
        phoneme_note = (f"{n_utts - scored} of {n_utts} utterances have no phonemes to score "
                        "(no transcript, or one espeak-ng could not phonemize)")
    if phoneme_note:
        report["phoneme_note"] = phoneme_note
    return report


def print_report(report: dict, title: str) -> None:
    scalars = {k: v for k, v in report.items() if k != "streams"}
    print_table([{"metric": k, "value": v} for k, v in scalars.items()], title)
    print_table([{"stream": k, **v} for k, v in report["streams"].items()], "code streams")
