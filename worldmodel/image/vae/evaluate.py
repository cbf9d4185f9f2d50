"""How well a trained image VAE reconstructs images it never saw:
``python -m worldmodel.eval image-vae [--run DIR] [--split held-out|train] [--count N]
[--grid FILE] [--json FILE]``.

The held-out images of the run's data (``ImageVaeData``: another seed's scenes, or the
last images of a fixed set), centred crops at the training size, go through the
posterior's mean and back. The table gives PSNR (dB, images in [-1, 1], reconstructions
clipped), SSIM (and MS-SSIM for images of 161 px and more), pixel L1, the KL per latent
position and its share per channel (a channel near 0 nats is unused), and the latent
statistics a diffusion model needs: the posterior means' per-channel mean and standard
deviation, and ``1 / std`` over all channels (latent diffusion's scale factor, which
brings the latents to unit variance). Without ``--run``: the newest image VAE run
under ``runs/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np

from worldmodel.command import eval_command, markdown_rows
from worldmodel.image.vae.config import KIND

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window


@dataclasses.dataclass(frozen=True)
class Options:
    run: str | None = None
    """the run directory (default: the newest image VAE run under runs/)."""
    split: Literal["held-out", "train"] = "held-out"
    """the held-out images, or as many training images (centred crops: no augmentation)."""
    count: int = 0
    """images to score (0: the run's ``data.eval_count``)."""
    batch_size: int = 16
    grid: Path | None = None
    """also save up to 8 images over their reconstructions here (PNG)."""
    json: Path | None = None
    """also write the results here."""


def evaluate(run: Path, opts: Options) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from common.data.images import make_image_pipeline
    from common.losses.ssim import ms_ssim, ssim
    from common.train.render import image_grid
    from worldmodel.image.vae.data import one_pass, split_sources
    from worldmodel.image.vae.loss import DATA_RANGE, SSIM_WINDOW, psnr
    from worldmodel.image.vae.training import load_vae

    model, cfg = load_vae(run)
    model.eval()
    count = opts.count or cfg.data.eval_count
    data = dataclasses.replace(cfg.data, eval_count=count)
    train_src, held_src = split_sources(data)
    source = held_src if opts.split == "held-out" else train_src
    pcfg = one_pass(cfg.data.train, min(opts.batch_size, count), drop_remainder=False)
    size = pcfg.size
    graphdef, state = nnx.split(model)

    @jax.jit
    def run_batch(state, image):
        vae = nnx.merge(graphdef, state)
        mean, logvar = vae.encode(image)
        rec = vae.decode(mean)
        # KL(N(mean, e^logvar) || N(0, 1)) per image and channel, mean over positions
        # (summed over channels: the training loss's KL per latent position)
        kl_dims = jnp.mean(0.5 * (jnp.expm1(logvar) - logvar + jnp.square(mean)), axis=(1, 2))
        out = {"psnr": psnr(rec, image), "l1": jnp.mean(jnp.abs(rec - image), axis=(1, 2, 3)),
               "mean": mean, "kl_dims": kl_dims}
        if size >= SSIM_WINDOW:
            out["ssim"] = ssim(rec, image, data_range=DATA_RANGE, window_size=SSIM_WINDOW)
        if size >= MS_SSIM_MIN_SIDE:
            out["ms_ssim"] = ms_ssim(rec, image, data_range=DATA_RANGE)
        return rec, out

    rows: dict[str, list] = {}
    shown = []
    for batch in make_image_pipeline(pcfg, source):
        image = jnp.asarray(batch["image"])
        rec, out = run_batch(state, image)
        for k, v in out.items():
            rows.setdefault(k, []).append(np.asarray(v))
        if len(shown) < 8:
            shown.extend(zip(np.asarray(image), np.asarray(rec), strict=True))
    scored = {k: np.concatenate(v) for k, v in rows.items()}
    n = len(scored["psnr"])
    if n == 0:
        raise ValueError(f"{run}: no images to score in split {opts.split!r}")
    if opts.grid is not None:
        from common.train.render import encode_png

        top, bottom = zip(*shown[:8], strict=True)
        opts.grid.write_bytes(encode_png(image_grid([np.stack(top), np.stack(bottom)])))
    means = scored["mean"].reshape(-1, scored["mean"].shape[-1])
    kl_dims = scored["kl_dims"].mean(axis=0)
    result = {"run": str(run), "split": opts.split, "images": n, "size": size,
              "latent_shape": list(scored["mean"].shape[1:]),
              "psnr": float(scored["psnr"].mean()), "l1": float(scored["l1"].mean()),
              "ssim": float(scored["ssim"].mean()) if "ssim" in scored else None,
              "ms_ssim": float(scored["ms_ssim"].mean()) if "ms_ssim" in scored else None,
              "kl": float(kl_dims.sum()), "kl_per_channel": [float(x) for x in kl_dims],
              "latent_mean": [float(x) for x in means.mean(axis=0)],
              "latent_std": [float(x) for x in means.std(axis=0)],
              "scale_factor": float(1.0 / max(means.std(), 1e-12))}
    return result


def format_table(r: dict) -> str:
    def num(v, fmt=".3f"):
        return "-" if v is None else format(v, fmt)

    def vec(xs, fmt=".2f"):
        return " / ".join(format(x, fmt) for x in xs)

    rows = [("images (size, latent)",
             f"{r['images']} ({r['size']} px, latent {'x'.join(map(str, r['latent_shape']))})"),
            ("PSNR (dB)", num(r["psnr"], ".2f")),
            ("SSIM / MS-SSIM", f"{num(r['ssim'])} / {num(r['ms_ssim'])}"),
            ("pixel L1 (range 2)", num(r["l1"], ".4f")),
            ("KL per latent position (nats)", num(r["kl"], ".2f")),
            ("KL per channel", vec(r["kl_per_channel"])),
            ("latent mean per channel", vec(r["latent_mean"])),
            ("latent std per channel", vec(r["latent_std"])),
            ("scale factor (1 / std)", num(r["scale_factor"], ".4f"))]
    return markdown_rows(rows)


def main(argv=None) -> dict:
    return eval_command(argv, options_cls=Options, doc=__doc__, kind=KIND, model="image-vae",
                        title="image VAE reconstruction", evaluate=evaluate,
                        format_table=format_table)
