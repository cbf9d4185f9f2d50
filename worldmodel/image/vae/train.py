"""Train the image VAE: ``python -m worldmodel.train image-vae [--preset tiny|base]
[--config FILE] [--any.config.field VALUE ...]``.

With no options: the ``tiny`` preset on 32 px crops of the procedural scenes (no
download) on CPU; checkpoints, ``config.json`` and W&B offline logs in ``runs/<name>``.
Short flags: ``--resume``, ``--steps N``, ``--batch-size N``, ``--run-name NAME``,
``--gan`` (a PatchGAN on the images).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.command import train_command
from worldmodel.image.vae.config import KIND, PRESETS, ImageVaeConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("vae/l1", "vae/psnr", "vae/kl", "gen/vae/l1", "gen/vae/psnr", "gen/adv_loss",
                "gen/adv_weight")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=ImageVaeConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND, data_module="worldmodel.image.vae.data",
                         training_module="worldmodel.image.vae.training",
                         summary_keys=SUMMARY_KEYS,
                         aliases={"--gan": "--adversarial",
                                  "--batch-size": "--data.train.batch-size"})
