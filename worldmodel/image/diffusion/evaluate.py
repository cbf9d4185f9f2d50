"""How well a trained image diffusion model generates digits:
``python -m worldmodel.eval image-diffusion [--run DIR] [--split train|held-out]
[--per-class N] [--steps N] [--sampler euler|heun|ddim] [--guidance G [G ...]]
[--grid FILE] [--json FILE]``.

``per_class`` samples of every digit, at each classifier-free guidance scale, are scored
by the small digits classifier (``worldmodel.image.digits_classifier``, trained here on
the run's training digits, in seconds): the share classified as the digit they were
drawn for, and the Frechet distance between its features on the samples and on the
real digits of ``--split``. That distance is this codebase's own, not comparable with
FID on Inception features. Two rows bound it from below: the real digits of the other
split, and their reconstructions through the run's VAE (what the latent space allows).
Also the sampling time per image (after compilation), and a memorisation check: the
mean RMS distance (8x8 grey, range 2) from each image to its nearest training digit,
for the samples and for the real digits of the other split (a model that copies its
training digits scores near 0, below the real digits). Without ``--run``: the newest
image diffusion run under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

from worldmodel.command import eval_command, markdown_rows
from worldmodel.image.diffusion.config import KIND


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest image diffusion run under runs/)."""
    split: Literal["train", "held-out"] = "train"
    """the real digits the samples are compared with (the other split is the floor)."""
    per_class: int = 0
    """samples per class (0: the run's ``per_class``)."""
    steps: int = 0
    """sampler steps (0: the run's)."""
    sampler: Literal["", "euler", "heun", "ddim"] = ""
    """"": the run's sampler."""
    guidance: tuple[float, ...] = ()
    """classifier-free guidance scales, one row each (empty: the run's scale)."""
    seed: int = 0
    grid: Path | None = None
    """also save 8 samples per class (the first guidance scale) here (PNG)."""
    json: Path | None = None
    """also write the results here."""


def load_diffusion(run):
    """A trained image diffusion model (EMA weights where kept) and its config."""
    from flax import nnx

    from common.config import config_from_dict
    from common.train.checkpoint import load_model
    from worldmodel.image.diffusion.config import ImageDiffusionConfig
    from worldmodel.image.diffusion.training import ImageDiffusionTrainee

    model, d = load_model(run, lambda d: ImageDiffusionTrainee(
        config_from_dict(ImageDiffusionConfig, d), rngs=nnx.Rngs(0)), item=("ema", "model"))
    model.eval()
    return model, config_from_dict(ImageDiffusionConfig, d)


def evaluate(run: Path, opts: Options) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from common.train.render import encode_png
    from worldmodel.diffusion.frechet import frechet_distance, gaussian_stats
    from worldmodel.image.diffusion.data import split_arrays
    from worldmodel.image.diffusion.training import (
        generate,
        sample_grid,
        sample_labels,
    )
    from worldmodel.image.digits_classifier import DigitsScorer, classify, to_grid

    model, cfg = load_diffusion(run)
    if not cfg.net.num_classes or cfg.data.train.source != "digits":
        raise ValueError(f"{run}: image-diffusion's evaluation scores class-conditioned "
                         f"digits; this run learned {cfg.data.train.source!r} images "
                         f"without classes")
    per_class = opts.per_class or cfg.per_class
    sampling = dataclasses.replace(cfg.sampling, steps=opts.steps or cfg.sampling.steps,
                                   sampler=opts.sampler or cfg.sampling.sampler)
    splits = {name: split_arrays(cfg.data, name) for name in ("train", "held-out")}
    train_images, train_labels = splits["train"]
    scorer = DigitsScorer(train_images, train_labels)
    train_grid = np.asarray(to_grid(train_images), np.float64)
    other = "held-out" if opts.split == "train" else "train"
    other_images, other_labels = splits[other]
    reference = (scorer.reference if opts.split == "train" else
                 gaussian_stats(classify(scorer.classifier, splits[opts.split][0])[0]))

    def score(images, labels) -> dict:
        feats, pred = classify(scorer.classifier, images)
        return {"class_accuracy": float(np.mean(pred == labels)),
                "frechet": frechet_distance(*gaussian_stats(feats), *reference),
                "nearest_train": nearest_distance(np.asarray(to_grid(images), np.float64),
                                                  train_grid)}

    reconstruct = nnx.jit(lambda m, x: m.decode(m.encode(x)))
    recon = np.concatenate([np.asarray(reconstruct(model, other_images[i:i + 256]))
                            for i in range(0, len(other_images), 256)])
    labels = sample_labels(cfg, per_class)
    key = jax.random.key(opts.seed)
    rows = []
    for g in opts.guidance or (sampling.guidance,):
        s = dataclasses.replace(sampling, guidance=float(g))
        images = generate(model, cfg, labels, key, s)  # compiles
        start = time.perf_counter()
        generate(model, cfg, labels, key, s)  # timed: the sampling alone
        seconds = time.perf_counter() - start
        rows.append({"guidance": float(g), **score(images, labels),
                     "seconds_per_image": seconds / len(labels)})
        if opts.grid is not None and len(rows) == 1:
            opts.grid.write_bytes(encode_png(sample_grid(images, labels)))
    return {"run": str(run), "split": opts.split, "denoiser": cfg.denoiser,
            "objective": cfg.objective, "sampler": sampling.sampler or "default",
            "steps": sampling.steps, "per_class": per_class, "samples": rows,
            "classifier_train_accuracy": scorer.train_accuracy,
            "real": {"split": other, "images": len(other_images),
                     **score(other_images, other_labels)},
            "reconstructed": {"split": other, **score(recon, other_labels)}}


def nearest_distance(x, train) -> float:
    """The mean over rows of ``x [N, D]`` of the RMS distance to the nearest row of
    ``train [M, D]``: a copy of a training digit scores 0."""
    import numpy as np

    d2 = (np.sum(x * x, 1)[:, None] - 2 * x @ train.T + np.sum(train * train, 1)[None])
    return float(np.mean(np.sqrt(np.maximum(d2.min(1), 0.0) / x.shape[1])))


def format_table(r: dict) -> str:
    rows = [("denoiser, objective", f"{r['denoiser']}, {r['objective']}"),
            ("sampler (steps), samples per class",
             f"{r['sampler']} ({r['steps']}), {r['per_class']}")]
    for s in r["samples"]:
        rows.append((f"samples, guidance {s['guidance']:g}",
                     f"accuracy {s['class_accuracy']:.3f}, Frechet {s['frechet']:.2f}, "
                     f"nearest train {s['nearest_train']:.3f}, "
                     f"{1e3 * s['seconds_per_image']:.2f} ms/image"))
    real, rec = r["real"], r["reconstructed"]
    rows.append((f"real {real['split']} digits ({real['images']})",
                 f"accuracy {real['class_accuracy']:.3f}, Frechet {real['frechet']:.2f}, "
                 f"nearest train {real['nearest_train']:.3f}"))
    rows.append(("their VAE reconstructions",
                 f"accuracy {rec['class_accuracy']:.3f}, Frechet {rec['frechet']:.2f}, "
                 f"nearest train {rec['nearest_train']:.3f}"))
    rows.append(("classifier accuracy on the training digits",
                 f"{r['classifier_train_accuracy']:.3f}"))
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND,
                        model="image-diffusion", title="image diffusion samples",
                        evaluate=evaluate, format_table=format_table)
