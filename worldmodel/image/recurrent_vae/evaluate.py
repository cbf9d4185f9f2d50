"""How the recurrent VAE's quality grows with refinement steps, and what early exit
saves: ``python -m worldmodel.eval recurrent-vae [--run DIR] [--split held-out|train]
[--count N] [--max-steps K] [--thresholds T [T ...]] [--grid FILE] [--json FILE]``.

The held-out images (centred crops, the posterior's mean) are decoded with 1, 2, ...,
``max-steps`` refinement steps (default: twice the training's, to show whether the cell
is stable past what it was trained for): PSNR, SSIM and the change per pixel of each
step. Then early exit at each threshold (default: the run's ``exit_threshold``, ten
times and a tenth of it; capped at ``max-steps``): the mean steps used per image, the
share of the training's step count that saves (negative: it ran more), its PSNR and
SSIM. Without ``--run``: the newest recurrent VAE run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from worldmodel.command import eval_command, markdown_rows
from worldmodel.image.recurrent_vae.config import KIND


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest recurrent VAE run under runs/)."""
    split: Literal["held-out", "train"] = "held-out"
    count: int = 0
    """images to score (0: the run's ``data.eval_count``)."""
    batch_size: int = 16
    max_steps: int = 0
    """refinement steps to report (0: twice the training's)."""
    thresholds: tuple[float, ...] = ()
    """early-exit thresholds (empty: the run's, x10 and x0.1)."""
    grid: Path | None = None
    """also save up to 8 images over their estimates at every step here (PNG)."""
    json: Path | None = None
    """also write the results here."""


def evaluate(run: Path, opts: Options) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from common.data.images import make_image_pipeline
    from common.losses.ssim import ssim
    from common.train.render import image_grid
    from worldmodel.image.recurrent_vae.training import load_recurrent_vae
    from worldmodel.image.vae.data import one_pass, split_sources
    from worldmodel.image.vae.loss import DATA_RANGE, SSIM_WINDOW, psnr

    model, cfg = load_recurrent_vae(run)
    model.eval()
    count = opts.count or cfg.data.eval_count
    train_src, held_src = split_sources(dataclasses.replace(cfg.data, eval_count=count))
    source = held_src if opts.split == "held-out" else train_src
    pcfg = one_pass(cfg.data.train, min(opts.batch_size, count), drop_remainder=False)
    k_max = opts.max_steps or 2 * cfg.model.steps
    base = cfg.model.exit_threshold
    thresholds = opts.thresholds or (10 * base, base, base / 10)
    use_ssim = pcfg.size >= SSIM_WINDOW

    def quality(x, image):
        out = {"psnr": psnr(x, image)}
        if use_ssim:
            out["ssim"] = ssim(jnp.clip(x, -1, 1), image, data_range=DATA_RANGE,
                               window_size=SSIM_WINDOW)
        return out

    @nnx.jit
    def fixed(model, image):
        xs = model.decode_steps(model.encode(image)[0], k_max)
        per_step = jax.vmap(lambda x: quality(x, image))(xs)
        prev = jnp.concatenate([jnp.zeros_like(xs[:1]), xs[:-1]])
        per_step["change"] = jnp.mean(jnp.abs(xs - prev), axis=(2, 3, 4))
        return xs, per_step

    @nnx.jit(static_argnames="k")
    def adaptive(model, image, threshold, k):
        x, used = model.decode_adaptive(model.encode(image)[0], threshold, k)
        return {**quality(x, image), "used": used}

    steps_rows: dict[str, list] = {}
    exit_rows: dict[float, dict[str, list]] = {t: {} for t in thresholds}
    shown = []
    for batch in make_image_pipeline(pcfg, source):
        image = jnp.asarray(batch["image"])
        xs, per_step = fixed(model, image)
        for name, v in per_step.items():
            steps_rows.setdefault(name, []).append(np.asarray(v))  # [K, B]
        for t in thresholds:
            for name, v in adaptive(model, image, jnp.float32(t), k_max).items():
                exit_rows[t].setdefault(name, []).append(np.asarray(v))
        if len(shown) < 8:
            shown.extend(zip(np.asarray(image), np.asarray(xs).swapaxes(0, 1), strict=True))
    per_step = {k: np.concatenate(v, axis=1) for k, v in steps_rows.items()}
    n = per_step["psnr"].shape[1]
    if opts.grid is not None:
        from common.train.render import encode_png

        top = np.stack([s[0] for s in shown[:8]])
        est = np.clip(np.stack([s[1] for s in shown[:8]], axis=1), -1, 1)  # [K, N, ...]
        opts.grid.write_bytes(encode_png(image_grid([top, *est])))

    def mean(x):
        return float(np.mean(x))

    steps = [{"steps": k + 1, "psnr": mean(per_step["psnr"][k]),
              "ssim": mean(per_step["ssim"][k]) if use_ssim else None,
              "change": mean(per_step["change"][k])} for k in range(k_max)]
    exits = []
    for t in thresholds:
        r = {k: np.concatenate(v) for k, v in exit_rows[t].items()}
        exits.append({"threshold": float(t), "mean_steps": mean(r["used"]),
                      "psnr": mean(r["psnr"]),
                      "ssim": mean(r["ssim"]) if use_ssim else None,
                      "saved": 1.0 - mean(r["used"]) / cfg.model.steps})
    return {"run": str(run), "split": opts.split, "images": n, "size": pcfg.size,
            "train_steps": cfg.model.steps, "per_step": steps, "early_exit": exits}


def format_table(r: dict) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = [("images (size), training steps", f"{r['images']} ({r['size']} px), "
             f"{r['train_steps']}")]
    for s in r["per_step"]:
        rows.append((f"{s['steps']} step{'s' * (s['steps'] > 1)}",
                     f"PSNR {s['psnr']:.2f} dB, SSIM {num(s['ssim'], '.3f')}, "
                     f"change {s['change']:.4f}"))
    for e in r["early_exit"]:
        rows.append((f"early exit at {e['threshold']:g}",
                     f"{e['mean_steps']:.2f} steps ({100 * e['saved']:.0f}% fewer than "
                     f"{r['train_steps']}), "
                     f"PSNR {e['psnr']:.2f} dB, SSIM {num(e['ssim'], '.3f')}"))
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND,
                        model="recurrent-vae", title="recurrent VAE refinement",
                        evaluate=evaluate, format_table=format_table)
