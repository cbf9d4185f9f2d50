"""Image diffusion's inputs: the VAE run it stands on and its image batches.

``resolve_data`` finds the VAE run (``--vae-run``; empty: the newest image VAE under
``runs/``, and none is a clear error naming the command that trains one), copies its
autoencoder's sizes, and sizes the denoiser from them: latent channels, the latent side
(the image side over the VAE's downsampling) and the classes of a labelled set.
Batches are the image VAE's (``worldmodel.image.vae.data``): ``{"image": [B, S, S, 3]}``
in [-1, 1], with ``"label" [B]`` for the digits. Latents are computed on the fly by the
frozen encoder inside the train step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from common.config import config_from_dict
from common.train.runs import pick_run
from worldmodel.image.diffusion.config import ImageDiffusionConfig
from worldmodel.image.vae.config import KIND as VAE_KIND
from worldmodel.image.vae.config import ImageVaeConfig, ImageVaeData, ImageVaeModelConfig
from worldmodel.image.vae.data import make_image_data, one_pass, split_sources

COMMAND = "worldmodel.train image-diffusion"
LABELLED = {"digits": 10}  # sources with class labels -> their class count


def resolve_data(cfg: ImageDiffusionConfig) -> ImageDiffusionConfig:
    path = pick_run(cfg.vae_run, VAE_KIND, f"{COMMAND} --vae-run", flag="--vae-run",
                    train_command="python -m worldmodel.train image-vae")
    try:
        vae = config_from_dict(ImageVaeConfig,
                               json.loads((Path(path) / "config.json").read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"--vae-run {path}: no config.json (not a finished "
                                f"image-vae run?)") from None
    return with_vae(cfg, vae.model, str(path))


def with_vae(cfg: ImageDiffusionConfig, vae: ImageVaeModelConfig, run: str
             ) -> ImageDiffusionConfig:
    """``cfg`` on the autoencoder ``vae`` of the run ``run``: the VAE's sizes copied and
    the denoiser sized from them (latent channels and side, the data's classes)."""
    size, f = cfg.data.train.size, vae.downsample
    if size % f:
        raise ValueError(f"data.train.size={size} is not a multiple of the VAE's "
                         f"downsampling {f} (--vae-run {run})")
    if vae.in_channels != 3:
        raise ValueError(f"--vae-run {run}: a VAE of {vae.in_channels}-channel images; "
                         f"the image pipeline gives RGB")
    side, channels = size // f, vae.latent_channels
    classes = LABELLED.get(cfg.data.train.source, 0)
    dit = dataclasses.replace(cfg.dit, in_channels=channels, input_size=side,
                              spatial_dims=2, num_classes=classes)
    unet = dataclasses.replace(cfg.unet, in_channels=channels, num_classes=classes)
    if side % unet.side_multiple and cfg.denoiser == "unet":
        raise ValueError(f"the latent side {side} is not a multiple of the UNet's "
                         f"{unet.side_multiple} (unet.channel_mult={unet.channel_mult})")
    return dataclasses.replace(cfg, vae_run=run, vae=vae, dit=dit, unet=unet)


def make_data(cfg: ImageDiffusionConfig
              ) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` of ``cfg.data``."""
    return make_image_data(cfg.data)


def split_arrays(data: ImageVaeData, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Every image of ``split`` (``"train"`` or ``"held-out"``) as the pipeline gives it,
    without augmentation: ``(images float32 [N, S, S, 3], labels int32 [N] or None)``."""
    from common.data.images import make_image_pipeline

    if split not in ("train", "held-out"):
        raise ValueError(f"split must be 'train' or 'held-out', got {split!r}")
    train_src, held_src = split_sources(data)
    source = train_src if split == "train" else held_src
    pcfg = one_pass(data.train, min(256, len(source)), drop_remainder=False)
    batches = list(make_image_pipeline(pcfg, source))
    images = np.concatenate([b["image"] for b in batches])
    labels = (np.concatenate([b["label"] for b in batches]) if "label" in batches[0]
              else None)
    return images, labels
