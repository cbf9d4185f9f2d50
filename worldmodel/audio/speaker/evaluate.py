"""Speaker verification of a trained speaker encoder: ``python -m worldmodel.eval
speaker-encoder [--run DIR] [--split test] [--max-seconds S] [--json FILE]``.

Every utterance of the split (whole, cropped to ``--max-seconds``) is embedded; every
pair of utterances is a trial scored by cosine similarity; the table gives the equal
error rate over all trials and over the trials between speakers the encoder never
heard in training (the corpus's held-out speakers: build it with
``--data.source.corpus-holdout-speakers N`` for training), and the identification
accuracy on the split's utterances of training speakers. Without ``--run``: the newest
speaker-encoder run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldmodel.audio.speaker.config import KIND, SpeakerEncoderConfig
from worldmodel.command import eval_command, markdown_rows

if TYPE_CHECKING:
    from worldmodel.audio.speaker.training import SpeakerClassifier

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest speaker-encoder run under runs/)."""
    split: str = "test"
    """the split to score (the corpus's test split holds its held-out speakers)."""
    max_seconds: float = 6.0
    """longer utterances are cropped to this."""
    batch_size: int = 8
    json: Path | None = None
    """also write the results here."""


def embed_split(model: SpeakerClassifier, cfg: SpeakerEncoderConfig, records: list[dict],
                max_seconds: float, batch_size: int) -> tuple[np.ndarray, list[str]]:
    """Embeddings ``[U, D]`` of ``records`` (in order) and their speakers."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.data.pipeline import PipelineConfig, iterate_eval
    from common.data.source_base import RecordSource
    from common.speech.features import log_mel_frames

    speakers = sorted({str(r["speaker"]) for r in records})
    pcfg = PipelineConfig(
        sample_rate=cfg.features.sample_rate, batch_size=batch_size, segment_seconds=None,
        max_seconds=max_seconds, long_utterances="crop",
        bucket_seconds=(*(b for b in (1.0, 2.0, 4.0) if b < max_seconds), max_seconds),
        frame_hops=(cfg.features.hop_length,), loudness_dbfs=cfg.data.loudness_dbfs,
        speakers=tuple(speakers), shuffle=False, worker_count=0)
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def embed(state, audio, lengths):
        mel, valid = log_mel_frames(cfg.features, audio, lengths)
        return nnx.merge(graphdef, state)(mel, valid)

    embs, labels = [], []
    for batch in iterate_eval(RecordSource(records, "eval"), pcfg):
        keep = np.asarray(batch["example_valid"])
        e = np.asarray(embed(state, jnp.asarray(batch["audio"]),
                             jnp.asarray(batch["audio_lengths"])))
        embs.append(e[keep])
        labels += [speakers[i] for i in np.asarray(batch["speaker"])[keep]]
    return np.concatenate(embs), labels


def evaluate(run: Path, opts: Options) -> dict:
    from flax import nnx

    from common.config import config_from_dict
    from common.speech.verification import cosine_trials, equal_error_rate
    from common.train.checkpoint import load_model
    from worldmodel.audio.data import split_records
    from worldmodel.audio.speaker.training import SpeakerClassifier

    model, d = load_model(run, lambda d: SpeakerClassifier(
        config_from_dict(SpeakerEncoderConfig, d), rngs=nnx.Rngs(0)))
    cfg = config_from_dict(SpeakerEncoderConfig, d)
    records = split_records(cfg.data.source, opts.split)
    emb, labels = embed_split(model, cfg, records, opts.max_seconds, opts.batch_size)
    labels_a = np.asarray(labels)
    table = set(cfg.data.speakers)
    out = {"run": str(run), "split": opts.split, "utterances": len(labels),
           "speakers": len(set(labels)),
           "unseen_speakers": len(set(labels) - table)}
    scores, target = cosine_trials(emb, labels_a)
    out["trials"], out["target_trials"] = len(scores), int(target.sum())
    out["eer"], out["threshold"] = equal_error_rate(scores, target)
    unseen = np.array([s not in table for s in labels])
    if unseen.sum() >= 2 and len(set(labels_a[unseen])) >= 2:
        s, t = cosine_trials(emb[unseen], labels_a[unseen])
        out["eer_unseen"] = equal_error_rate(s, t)[0] if t.any() else None
    seen = ~unseen
    if seen.any():
        classes = np.asarray(model.classes[...], np.float64)
        classes /= np.linalg.norm(classes, axis=1, keepdims=True)
        e = emb[seen] / np.linalg.norm(emb[seen], axis=1, keepdims=True)
        pred = [cfg.data.speakers[k] for k in np.argmax(e @ classes.T, axis=1)]
        out["identification_accuracy"] = float(np.mean(np.asarray(pred) == labels_a[seen]))
    return out


def format_table(r: dict) -> str:
    rows = [("utterances / speakers (unseen)",
             f"{r['utterances']} / {r['speakers']} ({r['unseen_speakers']})"),
            ("trials (same speaker)", f"{r['trials']} ({r['target_trials']})"),
            ("EER, all trials", f"{100 * r['eer']:.2f} %"),
            ("EER, unseen speakers", "-" if r.get("eer_unseen") is None
             else f"{100 * r['eer_unseen']:.2f} %"),
            ("identification accuracy (seen)", "-" if "identification_accuracy" not in r
             else f"{r['identification_accuracy']:.3f}")]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="speaker-encoder",
                        title="speaker verification", evaluate=evaluate, format_table=format_table)
