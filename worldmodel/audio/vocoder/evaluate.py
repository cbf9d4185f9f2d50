"""How well a trained vocoder re-synthesises speech it never heard:
``python -m worldmodel.eval vocoder [--run DIR] [--split test] [--max-seconds S]
[--max-utterances N] [--json FILE]``.

Every utterance of the split (whole, cropped to ``--max-seconds``; the corpus's test
split holds the speakers held out of training, counted in the table) goes through the
front end's log-mel and back through the vocoder; on the valid samples the table gives
the log-mel L1 distance (natural log, the training mel loss), the multi-resolution STFT
distance (spectral convergence + log magnitude, the training STFT loss), wide-band PESQ
and STOI, each a mean over utterances (PESQ over those it can score). Without ``--run``: the newest
vocoder run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from worldmodel.audio.vocoder.config import KIND
from worldmodel.command import eval_command, markdown_rows

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest vocoder run under runs/)."""
    split: str = "test"
    """the split to score (the corpus's test split holds its held-out speakers)."""
    max_seconds: float = 6.0
    """longer utterances are cropped to this."""
    max_utterances: int = 0
    """score only the split's first N utterances (0: all)."""
    batch_size: int = 8
    json: Path | None = None
    """also write the results here."""


def evaluate(run: Path, opts: Options) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.audio.quality import pesq_wb, stoi
    from common.data.pipeline import PipelineConfig, iterate_eval
    from common.data.source_base import RecordSource
    from worldmodel.audio.data import split_records
    from worldmodel.audio.vocoder.training import load_generator, reconstruction_loss, vocode

    model, cfg = load_generator(run)
    records = split_records(cfg.data.source, opts.split)
    if opts.max_utterances:
        records = records[:opts.max_utterances]
    sr, hop = cfg.features.sample_rate, cfg.features.hop_length
    pcfg = PipelineConfig(
        sample_rate=sr, batch_size=opts.batch_size, segment_seconds=None,
        max_seconds=opts.max_seconds, long_utterances="crop",
        bucket_seconds=(*(b for b in (1.0, 2.0, 4.0) if b < opts.max_seconds),
                        opts.max_seconds),
        frame_hops=(hop,), loudness_dbfs=cfg.data.loudness_dbfs, shuffle=False,
        worker_count=0)
    graphdef, state = nnx.split(model)

    def one(pred, target, length):  # per utterance: the losses are batch means
        return reconstruction_loss(pred[None], target[None], length[None], cfg)[1]

    @jax.jit
    def run_batch(state, audio, lengths):
        wav, valid_lengths = vocode(nnx.merge(graphdef, state), cfg, audio, lengths)
        return wav, valid_lengths, jax.vmap(one)(wav, audio, valid_lengths)

    rows = {"mel": [], "stft": [], "pesq": [], "stoi": []}
    for batch in iterate_eval(RecordSource(records, opts.split), pcfg):
        audio = jnp.asarray(batch["audio"][..., 0])
        wav, lengths, dist = run_batch(state, audio, jnp.asarray(batch["audio_lengths"]))
        wav, lengths, audio = np.asarray(wav), np.asarray(lengths), np.asarray(audio)
        for i in np.flatnonzero(np.asarray(batch["example_valid"])):
            n = audio.shape[1] - int(lengths[i])
            ref, est = audio[i, n:], wav[i, n:]
            rows["mel"].append(float(dist["mel"][i]))
            rows["stft"].append(float(dist["stft"][i]))
            rows["pesq"].append(pesq_wb(ref, est, sr))
            rows["stoi"].append(stoi(ref, est, sr))

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    heard = {str(r.get("speaker")) for r in split_records(cfg.data.source,
                                                          cfg.data.train_split)}
    unseen = sum(str(r.get("speaker")) not in heard for r in records)
    return {"run": str(run), "split": opts.split, "utterances": len(rows["mel"]),
            "unseen_speaker_utterances": unseen,
            "pesq_scored": sum(x is not None for x in rows["pesq"]),
            "mel_distance": mean(rows["mel"]), "mr_stft_distance": mean(rows["stft"]),
            "pesq_wb": mean(rows["pesq"]), "stoi": mean(rows["stoi"])}


def format_table(r: dict) -> str:
    def num(v, fmt=".3f"):
        return "-" if v is None else format(v, fmt)

    rows = [("utterances (PESQ scored)", f"{r['utterances']} ({r['pesq_scored']})"),
            ("of them by unseen speakers", str(r["unseen_speaker_utterances"])),
            ("log-mel L1 distance", num(r["mel_distance"])),
            ("MR-STFT distance", num(r["mr_stft_distance"])),
            ("PESQ-WB", num(r["pesq_wb"], ".2f")),
            ("STOI", num(r["stoi"]))]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="vocoder",
                        title="vocoder re-synthesis", evaluate=evaluate, format_table=format_table)
