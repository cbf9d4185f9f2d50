"""What a trained SIVE reads and what it forgets: ``python -m worldmodel.eval audio-sive
[--run DIR] [--split test] [--json FILE]``.

- **Phoneme error rate** of its greedy CTC decoding over every utterance of the split,
  and over those by speakers it never heard in training (the corpus's held-out
  speakers, all in its test split). Utterances cropped at ``data.max_seconds`` have no
  whole transcript and are counted, not scored.
- **Speaker probes**: the two-fold accuracy of a linear classifier
  (``worldmodel.audio.probe``) naming the speaker (a) of each utterance from the mean
  and standard deviation over time of SIVE's content features and (b) of each feature
  frame (25 Hz, the frames of one utterance kept in one fold), against the same probe
  on the log-mel frames SIVE reads (their statistics; the mel frame at each feature
  frame's centre), on the same utterances. The ratio SIVE / mel is the speaker
  information the encoder removed, as a number: the issue's target is <= 0.5. Both
  probes, because each can be fooled alone: features normalised per utterance have
  constant statistics but may still say who speaks frame by frame.

Without ``--run``: the newest SIVE run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldmodel.audio.sive.config import KIND, SiveConfig
from worldmodel.command import eval_command, markdown_rows

if TYPE_CHECKING:
    from worldmodel.audio.sive.model import Sive

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest SIVE run under runs/)."""
    split: str = "test"
    """the split to score (the corpus's test split holds its held-out speakers)."""
    batch_size: int = 8
    probe_l2: float = 1.0
    """the probe's L2 penalty (on standardised features; scikit-learn's C = 1 / l2)."""
    json: Path | None = None
    """also write the results here."""


@dataclasses.dataclass
class SplitReadout:
    """Per scored utterance (in pipeline order): speaker, CTC edits and reference length
    (``ref_len`` 0: cropped, no transcript), and the pooled features of the probe."""

    speakers: list[str]
    edits: np.ndarray
    ref_len: np.ndarray
    content_stats: np.ndarray  # [U, 2 * dim]: mean and std of SIVE's features over time
    mel_stats: np.ndarray  # [U, 2 * n_mels]: the same of the log-mel input
    content_frames: np.ndarray  # [F, dim]: every valid feature frame (25 Hz)
    mel_frames: np.ndarray  # [F, n_mels]: the log-mel frame at the centre of each
    frame_utterance: np.ndarray  # [F]: the index (in ``speakers``) of its utterance


def read_split(model: Sive, cfg: SiveConfig, records: list[dict], batch_size: int
               ) -> SplitReadout:
    """Run ``model`` over ``records`` (whole utterances, as in training)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.data.pipeline import iterate_eval
    from common.data.source_base import RecordSource
    from common.losses.ctc_decode import greedy_ctc_errors
    from common.speech.features import log_mel_frames
    from common.speech.pooling import masked_mean_std, uniform_weights
    from worldmodel.audio.sive.data import pipeline_config

    speakers = tuple(sorted({str(r["speaker"]) for r in records}))
    pcfg = dataclasses.replace(pipeline_config(cfg), batch_size=batch_size, shuffle=False,
                               worker_count=0, speakers=speakers)
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def read(state, audio, lengths, phonemes, phonemes_valid):
        mel, valid = log_mel_frames(cfg.features, audio, lengths)
        out = nnx.merge(graphdef, state).encoder(mel, valid)
        edits, ref_len = greedy_ctc_errors(out.logits, out.logit_valid, phonemes,
                                           phonemes_valid)
        pooled = [jnp.concatenate(masked_mean_std(x, uniform_weights(v)), axis=-1)
                  for x, v in ((out.features, out.valid), (mel, valid))]
        # The front end keeps every 4th mel frame's validity (valid[:, ::4]); the mel
        # frame there is the centre of the content frame's receptive field.
        return edits, ref_len, *pooled, out.features, mel[:, ::4], out.valid

    cols: dict[str, list] = {k: [] for k in ("edits", "ref_len", "content", "mel",
                                             "content_frames", "mel_frames")}
    names: list[str] = []
    utterance: list[np.ndarray] = []
    for batch in iterate_eval(RecordSource(records, "eval"), pcfg):
        keep = np.asarray(batch["example_valid"])
        *got, frame_valid = read(state, *(jnp.asarray(batch[k]) for k in (
            "audio", "audio_lengths", "phonemes", "phonemes_valid")))
        frame_valid = np.asarray(frame_valid) & keep[:, None]
        for key, value in zip(cols, got, strict=True):
            value = np.asarray(value)
            cols[key].append(value[frame_valid] if key.endswith("frames") else value[keep])
        rows = np.nonzero(frame_valid)[0]  # the batch row of every kept frame
        utterance.append(len(names) + np.cumsum(keep)[rows] - 1)  # its kept rank
        names += [speakers[i] for i in np.asarray(batch["speaker"])[keep]]
    c = {k: np.concatenate(v) for k, v in cols.items()}
    return SplitReadout(names, c["edits"], c["ref_len"], c["content"], c["mel"],
                        c["content_frames"], c["mel_frames"], np.concatenate(utterance))


def error_rate(edits: np.ndarray, ref_len: np.ndarray, rows: np.ndarray) -> float | None:
    """``sum(edits) / sum(ref_len)`` over the scored ``rows`` (None: nothing to score)."""
    rows = rows & (ref_len > 0)
    den = int(ref_len[rows].sum())
    return float(edits[rows].sum()) / den if den else None


def evaluate(run: Path, opts: Options) -> dict:
    from flax import nnx

    from common.config import config_from_dict
    from common.train.checkpoint import load_model
    from worldmodel.audio.data import split_records
    from worldmodel.audio.probe import probe_accuracy
    from worldmodel.audio.sive.model import Sive

    def build(d):
        c = config_from_dict(SiveConfig, d)
        return Sive(c.encoder, c.adversary, len(c.data.speakers), rngs=nnx.Rngs(0))

    model, d = load_model(run, build)
    cfg = config_from_dict(SiveConfig, d)
    records = split_records(cfg.data.source, opts.split)
    r = read_split(model, cfg, records, opts.batch_size)
    seen = set(cfg.data.speakers)
    unseen = np.array([s not in seen for s in r.speakers])
    everything = np.ones_like(unseen)
    out = {"run": str(run), "split": opts.split, "utterances": len(r.speakers),
           "speakers": len(set(r.speakers)),
           "unseen_speakers": len({s for s in r.speakers if s not in seen}),
           "cropped": int(np.sum(r.ref_len == 0)),
           "per": error_rate(r.edits, r.ref_len, everything),
           "per_unseen": error_rate(r.edits, r.ref_len, unseen),
           "per_seen": error_rate(r.edits, r.ref_len, ~unseen)}
    frame_speakers = np.asarray(r.speakers)[r.frame_utterance]
    probes = {"probe": (r.content_stats, r.mel_stats, r.speakers, None),
              "frame_probe": (r.content_frames, r.mel_frames, frame_speakers,
                              r.frame_utterance)}
    for key, (content, mel, labels, groups) in probes.items():
        try:
            for name, x in (("content", content), ("mel", mel)):
                p = probe_accuracy(x, labels, groups, l2=opts.probe_l2)
                out[f"{key}_{name}"] = p.accuracy
                out[f"{key}_chance"], out[f"{key}_examples"], out["probe_speakers"] = (
                    p.chance, p.examples, p.classes)
            out[f"{key}_ratio"] = out[f"{key}_content"] / max(out[f"{key}_mel"], 1e-9)
        except ValueError as e:  # too few utterances per speaker in this split
            log.warning("speaker probe left out on split %r: %s", opts.split, e)
            out[f"{key}_content"] = None
    return out


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_table(r: dict) -> str:
    rows = [("utterances / speakers (unseen)",
             f"{r['utterances']} / {r['speakers']} ({r['unseen_speakers']})"),
            ("cropped (no transcript, not scored)", str(r["cropped"])),
            ("PER, all", _rate(r["per"])),
            ("PER, unseen speakers", _rate(r["per_unseen"])),
            ("PER, seen speakers", _rate(r["per_seen"]))]
    for key, what in (("probe", "utterance"), ("frame_probe", "frame")):
        if r[f"{key}_content"] is None:
            rows.append((f"{what} speaker probe", "- (too few utterances per speaker)"))
            continue
        rows += [(f"{what} probe on SIVE features ({r['probe_speakers']} speakers, "
                  f"{r[f'{key}_examples']} {what}s)", f"{r[f'{key}_content']:.3f}"),
                 (f"{what} probe on the log-mel input", f"{r[f'{key}_mel']:.3f}"),
                 (f"{what} probe ratio (SIVE / mel; target <= 0.5)",
                  f"{r[f'{key}_ratio']:.3f}"),
                 (f"{what} probe chance (majority speaker)", f"{r[f'{key}_chance']:.3f}")]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="audio-sive",
                        title="SIVE", evaluate=evaluate, format_table=format_table)
