"""Train latent diffusion on images: ``python -m worldmodel.train image-diffusion
[--vae-run DIR] [--preset tiny|cpu] [--denoiser dit|unet] [--objective flow|diffusion]
[--config FILE] [--any.config.field VALUE ...]``.

Stands on an image VAE run (``--vae-run``; default: the newest under ``runs/``; for the
digits, ``python -m worldmodel.train image-vae --preset digits``). With no options:
the ``tiny`` preset, a class-conditioned DiT on the latents of 32 px digits, on CPU;
checkpoints, ``config.json``, W&B offline logs and sample grids in ``runs/<name>``.
Short flags: ``--resume``, ``--steps N``, ``--batch-size N``, ``--run-name NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.command import train_command
from worldmodel.image.diffusion.config import KIND, PRESETS, ImageDiffusionConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("loss", "x0_mse")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=ImageDiffusionConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND, data_module="worldmodel.image.diffusion.data",
                         training_module="worldmodel.image.diffusion.training",
                         summary_keys=SUMMARY_KEYS,
                         aliases={"--batch-size": "--data.train.batch-size"})
