"""Train the recurrent image VAE: ``python -m worldmodel.train recurrent-vae [--preset
tiny] [--config FILE] [--any.config.field VALUE ...]``.

A VAE whose decoder refines its image ``model.steps`` times with one shared cell, each
step scored; inference exits early per image once the change per pixel falls below
``model.exit_threshold``. With no options: the ``tiny`` preset on 32 px crops of the
procedural scenes (no download) on CPU; checkpoints, ``config.json`` and W&B offline
logs in ``runs/<name>``. Short flags: ``--resume``, ``--steps N``, ``--batch-size N``,
``--run-name NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.command import train_command
from worldmodel.image.recurrent_vae.config import KIND, PRESETS, RecurrentVaeConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("vae/l1", "vae/psnr_first", "vae/psnr", "vae/kl")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=RecurrentVaeConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND, data_module="worldmodel.image.vae.data",
                         training_module="worldmodel.image.recurrent_vae.training",
                         summary_keys=SUMMARY_KEYS,
                         aliases={"--batch-size": "--data.train.batch-size"})
