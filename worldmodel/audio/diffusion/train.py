"""Train latent diffusion on speech: ``python -m worldmodel.train audio-diffusion
[--vae-run DIR] [--vocoder-run DIR] [--preset tiny] [--objective flow|diffusion]
[--config FILE] [--any.config.field VALUE ...]``.

Stands on an audio CVAE run (``--vae-run``; default: the newest under ``runs/``), which
stands on SIVE and speaker-encoder runs: ``python -m worldmodel.train speaker-encoder``,
``audio-sive``, ``audio-cvae``, then this. With no options: the ``tiny`` preset, a 1-D
DiT on the CVAE's latents conditioned on the speaker embedding, on CPU; every
``eval_every`` steps the mel statistics distance of generated speech to held-out speech
(and, with ``--vocoder-run``, the generated audio in W&B). Short flags: ``--resume``,
``--steps N``, ``--batch-size N``, ``--run-name NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.audio.diffusion.config import KIND, PRESETS, AudioDiffusionConfig
from worldmodel.command import train_command

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("loss", "x0_mse")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=AudioDiffusionConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND, data_module="worldmodel.audio.diffusion.data",
                         training_module="worldmodel.audio.diffusion.training",
                         summary_keys=SUMMARY_KEYS,
                         # its own field (0: the CVAE run's), not the shared --data.batch-size
                         aliases={"--batch-size": "--batch-size"})
