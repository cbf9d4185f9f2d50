"""How well the audio CVAE rebuilds and converts voices: ``python -m worldmodel.eval
audio-cvae [--run DIR] [--split test] [--json FILE]``.

Everything is measured on mel spectrograms with the encoders the CVAE was trained
over (checkpointed with it), no vocoder in the loop:

- **Reconstruction**: L1 between the log-mel and its reconstruction through the
  posterior mean, over the valid frames (nats of log mel).
- **Voice conversion**: every utterance is decoded with another speaker's embedding
  (the next speaker of the split, cyclically; a speaker's embedding is the normalised
  mean of its utterances' embeddings). The speaker encoder then embeds the converted
  mel: its cosine to the target speaker and to the source speaker, and the share of
  conversions closer to the target (the issue's target: closer to the target).
- **Content**: SIVE's greedy-CTC phoneme error rate on the original mels, on the
  reconstructions and on the conversions (what the conversion keeps of the words).

Without ``--run``: the newest CVAE run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldmodel.audio.command import eval_command, markdown_rows
from worldmodel.audio.cvae.config import KIND, CvaeConfig

if TYPE_CHECKING:
    from worldmodel.audio.cvae.training import CvaeTrainee

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest CVAE run under runs/)."""
    split: str = "test"
    """the split to score (the corpus's test split holds its held-out speakers)."""
    batch_size: int = 8
    json: Path | None = None
    """also write the results here."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def evaluate_model(model: CvaeTrainee, cfg: CvaeConfig, records: list[dict],
                   batch_size: int) -> dict:
    """The module docstring's measures over ``records``."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.data.pipeline import iterate_eval
    from common.data.source_base import RecordSource
    from common.losses.ctc_decode import greedy_ctc_errors
    from worldmodel.audio.cvae.data import pipeline_config

    if cfg.speaker_features != cfg.features:
        raise ValueError("this evaluation embeds converted mels with the speaker encoder, "
                         "which reads other mel features than SIVE's")
    if not cfg.phoneme_vocab:
        raise ValueError("the run's config names no phoneme_vocab (SIVE's CTC symbols)")
    speakers = tuple(sorted({str(r["speaker"]) for r in records}))
    if len(speakers) < 2:
        raise ValueError(f"voice conversion needs two speakers in the split, got {speakers}")
    pcfg = dataclasses.replace(
        pipeline_config(cfg), batch_size=batch_size, shuffle=False, worker_count=0,
        speakers=speakers, phoneme_vocab=cfg.phoneme_vocab or None, phonemize=True,
        long_tokens="mask", max_tokens=None)
    model.eval()
    graphdef, state = nnx.split(model)

    def batches():
        return iterate_eval(RecordSource(records, "eval"), pcfg)

    @jax.jit
    def embed(state, audio, lengths):
        return nnx.merge(graphdef, state).conditioning(audio, lengths)[3]

    # Pass 1: each speaker's embedding (the normalised mean of its utterances').
    sums = np.zeros((len(speakers), cfg.speaker.embed_dim))
    for b in batches():
        keep = np.asarray(b["example_valid"])
        e = np.asarray(embed(state, jnp.asarray(b["audio"]), jnp.asarray(b["audio_lengths"])))
        np.add.at(sums, np.asarray(b["speaker"])[keep], e[keep])
    centroids = _unit(sums)

    @jax.jit
    def score(state, audio, lengths, f0, voiced, phonemes, phonemes_valid, target):
        m = nnx.merge(graphdef, state)
        mel, valid, content, emb = m.conditioning(audio, lengths)
        out = m.cvae(mel, valid, content, emb, f0, voiced)
        converted = m.cvae.decode(out.mean, content, valid, target, f0, voiced)
        l1 = jnp.sum(jnp.abs(out.mel - mel) * valid[..., None], axis=(1, 2))
        counts = jnp.sum(valid, axis=1) * mel.shape[-1]
        per = {}
        for name, x in (("original", mel), ("reconstructed", out.mel),
                        ("converted", converted)):
            enc = m.content(x, valid)
            per[name] = greedy_ctc_errors(enc.logits, enc.logit_valid, phonemes,
                                          phonemes_valid)[0]
        conv_emb = m.speaker(converted, valid)
        return l1, counts, per, conv_emb, jnp.sum(phonemes_valid, axis=1)

    rows: dict[str, list] = {k: [] for k in ("l1", "n", "ref", "cos_target", "cos_source",
                                             "original", "reconstructed", "converted")}
    for b in batches():
        keep = np.asarray(b["example_valid"])
        src = np.asarray(b["speaker"])
        tgt = (src + 1) % len(speakers)
        l1, n, per, conv, ref = score(state, *(jnp.asarray(b[k]) for k in (
            "audio", "audio_lengths", "f0", "voiced", "phonemes", "phonemes_valid")),
            jnp.asarray(centroids[tgt], jnp.float32))
        conv = _unit(np.asarray(conv, np.float64))
        rows["l1"].append(np.asarray(l1)[keep])
        rows["n"].append(np.asarray(n)[keep])
        rows["ref"].append(np.asarray(ref)[keep])
        rows["cos_target"].append(np.sum(conv * centroids[tgt], -1)[keep])
        rows["cos_source"].append(np.sum(conv * centroids[src], -1)[keep])
        for k in ("original", "reconstructed", "converted"):
            rows[k].append(np.asarray(per[k])[keep])
    r = {k: np.concatenate(v) for k, v in rows.items()}
    scored = r["ref"] > 0  # cropped utterances have no transcript
    den = max(int(r["ref"][scored].sum()), 1)
    return {
        "utterances": len(r["l1"]), "speakers": len(speakers),
        "mel_l1": float(r["l1"].sum() / r["n"].sum()),
        "cos_target": float(r["cos_target"].mean()),
        "cos_source": float(r["cos_source"].mean()),
        "closer_to_target": float(np.mean(r["cos_target"] > r["cos_source"])),
        **{f"per_{k}": float(r[k][scored].sum() / den)
           for k in ("original", "reconstructed", "converted")},
    }


def evaluate(run: Path, opts: Options) -> dict:
    from flax import nnx

    from common.config import config_from_dict
    from common.train.checkpoint import load_model
    from worldmodel.audio.cvae.training import CvaeTrainee
    from worldmodel.audio.data import split_records

    model, d = load_model(run, lambda d: CvaeTrainee(config_from_dict(CvaeConfig, d),
                                                     rngs=nnx.Rngs(0)))
    cfg = config_from_dict(CvaeConfig, d)
    records = split_records(cfg.data.source, opts.split)
    return {"run": str(run), "split": opts.split,
            **evaluate_model(model, cfg, records, opts.batch_size)}


def format_table(r: dict) -> str:
    rows = [("utterances / speakers", f"{r['utterances']} / {r['speakers']}"),
            ("mel L1 of reconstructions (log mel)", f"{r['mel_l1']:.3f}"),
            ("conversion: cosine to target speaker", f"{r['cos_target']:.3f}"),
            ("conversion: cosine to source speaker", f"{r['cos_source']:.3f}"),
            ("conversions closer to the target", f"{r['closer_to_target']:.3f}"),
            ("PER original / reconstructed / converted",
             f"{r['per_original']:.3f} / {r['per_reconstructed']:.3f} / "
             f"{r['per_converted']:.3f}")]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="audio-cvae",
                        title="audio CVAE", evaluate=evaluate, format_table=format_table)
