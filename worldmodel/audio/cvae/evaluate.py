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

With ``--vocoder-run DIR`` (a vocoder over the same mel features) the table adds the
yardstick the issue sets the reconstruction against: the vocoder's own re-synthesis
distance, i.e. the log-mel L1 between the original mel and the mel of the vocoded
original, and the CVAE's reconstruction distance over the same frames (those valid in
both; the target is a ratio of at most 1.5), plus the distance after vocoding the
reconstruction (what a listener gets). All in the CVAE's own log-mel.

Without ``--run``: the newest CVAE run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldmodel.audio.cvae.config import KIND, CvaeConfig
from worldmodel.command import eval_command, markdown_rows

if TYPE_CHECKING:
    from worldmodel.audio.cvae.training import CvaeTrainee
    from worldmodel.audio.vocoder.config import VocoderConfig
    from worldmodel.audio.vocoder.training import Generator

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest CVAE run under runs/)."""
    split: str = "test"
    """the split to score (the corpus's test split holds its held-out speakers)."""
    batch_size: int = 8
    vocoder_run: str | None = None
    """a vocoder run to measure the reconstruction against (see above; "" : the newest
    vocoder run under runs/)."""
    json: Path | None = None
    """also write the results here."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def evaluate_model(model: CvaeTrainee, cfg: CvaeConfig, records: list[dict],
                   batch_size: int, vocoder: tuple[Generator, VocoderConfig] | None = None
                   ) -> dict:
    """The module docstring's measures over ``records`` (the vocoder's with
    ``vocoder``: its generator and config)."""
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
        return (l1, counts, per, conv_emb, jnp.sum(phonemes_valid, axis=1),
                (mel, valid, out.mel))

    vocoded = None
    if vocoder is not None:
        if vocoder[1].features != cfg.features:
            raise ValueError(f"the vocoder reads other mel features than the CVAE makes: "
                             f"{vocoder[1].features} vs {cfg.features}")
        vocoded = _vocoder_distances(vocoder[0], cfg)
    rows: dict[str, list] = {k: [] for k in ("l1", "n", "ref", "cos_target", "cos_source",
                                             "original", "reconstructed", "converted",
                                             *VOCODED)}
    for b in batches():
        keep = np.asarray(b["example_valid"])
        src = np.asarray(b["speaker"])
        tgt = (src + 1) % len(speakers)
        l1, n, per, conv, ref, mels = score(state, *(jnp.asarray(b[k]) for k in (
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
        if vocoded is not None:
            for k, v in vocoded(*mels).items():
                rows[k].append(np.asarray(v)[keep])
    r = {k: np.concatenate(v) for k, v in rows.items() if v}
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
        **(_vocoder_results(r) if vocoded is not None else {}),
    }


VOCODED = ("voc_n", "voc_resynthesis", "voc_cvae", "voc_cvae_vocoded")


def _vocoder_distances(generator: Generator, cfg: CvaeConfig):
    """A jitted ``(mel, valid, reconstruction) -> {VOCODED: [B]}``: per row, the frame
    count valid in the mel and in the vocoded mels' analysis, and the summed log-mel L1 over
    them of the vocoded original, of the reconstruction, and of the vocoded
    reconstruction."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.losses.spectral import sample_mask
    from common.speech.features import log_mel_frames
    from worldmodel.audio.vocoder.training import mel_to_wave

    graphdef, state = nnx.split(generator)
    hop = cfg.features.hop_length

    @jax.jit
    def run(state, mel, valid, recon):
        g = nnx.merge(graphdef, state)
        n = (mel.shape[1] - 1) * hop

        def analyse(x):  # a mel through the vocoder and the front end again
            wav, lengths = mel_to_wave(g, x, valid, n)
            wav = jnp.where(sample_mask(lengths, n, "left"), wav, 0.0)
            return log_mel_frames(cfg.features, wav, lengths)

        resynth, v2 = analyse(mel)
        recon_voc, v3 = analyse(recon)
        both = (valid & v2 & v3)[..., None]

        def dist(x):
            return jnp.sum(jnp.abs(x - mel) * both, axis=(1, 2))

        return {"voc_n": jnp.sum(both, axis=(1, 2)) * mel.shape[-1],
                "voc_resynthesis": dist(resynth), "voc_cvae": dist(recon),
                "voc_cvae_vocoded": dist(recon_voc)}

    return lambda mel, valid, recon: run(state, mel, valid, recon)


def _vocoder_results(r: dict) -> dict:
    n = r["voc_n"].sum()
    out = {k: float(r[f"voc_{k}"].sum() / n) for k in ("resynthesis", "cvae", "cvae_vocoded")}
    return {"vocoder_resynthesis_l1": out["resynthesis"], "mel_l1_same_frames": out["cvae"],
            "reconstruction_vs_vocoder": out["cvae"] / max(out["resynthesis"], 1e-12),
            "vocoded_reconstruction_l1": out["cvae_vocoded"]}


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
    vocoder, extra = None, {}
    if opts.vocoder_run is not None:
        from common.train.runs import pick_run
        from worldmodel.audio.vocoder.config import KIND as VOCODER_KIND
        from worldmodel.audio.vocoder.training import load_generator

        path = pick_run(opts.vocoder_run, VOCODER_KIND, "worldmodel.eval audio-cvae",
                        flag="--vocoder-run", train_command="python -m worldmodel.train vocoder")
        vocoder, extra = load_generator(path), {"vocoder_run": str(path)}
    return {"run": str(run), "split": opts.split, **extra,
            **evaluate_model(model, cfg, records, opts.batch_size, vocoder)}


def format_table(r: dict) -> str:
    rows = [("utterances / speakers", f"{r['utterances']} / {r['speakers']}"),
            ("mel L1 of reconstructions (log mel)", f"{r['mel_l1']:.3f}"),
            ("conversion: cosine to target speaker", f"{r['cos_target']:.3f}"),
            ("conversion: cosine to source speaker", f"{r['cos_source']:.3f}"),
            ("conversions closer to the target", f"{r['closer_to_target']:.3f}"),
            ("PER original / reconstructed / converted",
             f"{r['per_original']:.3f} / {r['per_reconstructed']:.3f} / "
             f"{r['per_converted']:.3f}")]
    if "vocoder_resynthesis_l1" in r:
        rows += [("vocoder re-synthesis L1 (the yardstick)", f"{r['vocoder_resynthesis_l1']:.3f}"),
                 ("reconstruction L1 on the same frames", f"{r['mel_l1_same_frames']:.3f}"),
                 ("reconstruction / re-synthesis (target <= 1.5)",
                  f"{r['reconstruction_vs_vocoder']:.2f}"),
                 ("vocoded reconstruction L1", f"{r['vocoded_reconstruction_l1']:.3f}")]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="audio-cvae",
                        title="audio CVAE", evaluate=evaluate, format_table=format_table)
