"""How close generated speech comes to held-out speech: ``python -m worldmodel.eval
audio-diffusion [--run DIR] [--split validation|test] [--batches N] [--steps N]
[--guidance G] [--json FILE]``.

For every held-out utterance (up to ``--batches`` batches of the CVAE run's pipeline)
a latent is sampled for its speaker and length and decoded with its content and F0;
the table gives the mel statistics distance (the Frechet distance between Gaussians of
log-mel frames) of those generated mels to the real ones, with the CVAE's
reconstructions (posterior means: the floor the latent space allows) and decodes of
the prior's samples (N(0, I): what generating without the diffusion model gives).
Without ``--run``: the newest audio diffusion run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from worldmodel.audio.diffusion.config import KIND
from worldmodel.command import eval_command, markdown_rows


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest audio diffusion run under runs/)."""
    split: str = "validation"
    """the corpus split whose utterances are scored (the CVAE's held-out speakers)."""
    batches: int = 8
    """batches of the split to score (each of the CVAE run's batch size)."""
    steps: int = 0
    """sampler steps (0: the run's)."""
    guidance: float = -1.0
    """classifier-free guidance on the speaker (negative: the run's)."""
    json: Path | None = None
    """also write the results here."""


def evaluate(run: Path, opts: Options) -> dict:
    import itertools

    from flax import nnx

    from common.config import config_from_dict
    from common.data.pipeline import iterate_eval
    from common.data.source_base import RecordSource
    from common.train.checkpoint import load_model
    from worldmodel.audio.cvae.data import pipeline_config
    from worldmodel.audio.data import split_records
    from worldmodel.audio.diffusion.config import AudioDiffusionConfig
    from worldmodel.audio.diffusion.training import AudioDiffusionTrainee, mel_statistics

    model, d = load_model(run, lambda d: AudioDiffusionTrainee(
        config_from_dict(AudioDiffusionConfig, d), rngs=nnx.Rngs(0)), item=("ema", "model"))
    model.eval()
    cfg = config_from_dict(AudioDiffusionConfig, d)
    sampling = dataclasses.replace(
        cfg.sampling, steps=opts.steps or cfg.sampling.steps,
        guidance=cfg.sampling.guidance if opts.guidance < 0 else opts.guidance)
    cfg = dataclasses.replace(cfg, sampling=sampling)
    records = split_records(cfg.cvae.data.source, opts.split)
    pcfg = dataclasses.replace(pipeline_config(cfg.cvae), worker_count=0)
    batches = list(itertools.islice(iterate_eval(RecordSource(records, opts.split), pcfg),
                                    opts.batches))
    if not batches:
        raise ValueError(f"{run}: no utterances in split {opts.split!r}")
    scores, _ = mel_statistics(model, cfg, batches)
    return {"run": str(run), "split": opts.split, "utterances": sum(
        len(b["audio"]) for b in batches), "steps": sampling.steps,
        "guidance": sampling.guidance, **scores}


def format_table(r: dict) -> str:
    return markdown_rows([
        ("utterances, sampler steps, guidance",
         f"{r['utterances']}, {r['steps']}, {r['guidance']:g}"),
        ("mel statistics distance, generated", f"{r['mel_frechet']:.3f}"),
        ("... CVAE reconstructions (floor)", f"{r['recon_mel_frechet']:.3f}"),
        ("... prior samples decoded", f"{r['prior_mel_frechet']:.3f}")])


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND,
                        model="audio-diffusion", title="audio diffusion samples",
                        evaluate=evaluate, format_table=format_table)
