"""Train the audio CVAE: ``python -m worldmodel.train audio-cvae [--preset tiny|base]
[--sive-run DIR] [--speaker-run DIR] [--config FILE] [--any.config.field VALUE ...]``.

With no options: the ``tiny`` preset over the newest SIVE and speaker-encoder runs under
``runs/`` (train them first: ``python -m worldmodel.train audio-sive`` and
``speaker-encoder``), on the embedded corpus at 16 kHz; checkpoints (the CVAE with the
frozen encoders it reads), ``config.json`` (the runs it stands on and their configs)
and W&B offline logs in ``runs/<name>``. Short flags: ``--resume``, ``--steps N``,
``--batch-size N``, ``--run-name NAME``, ``--gan`` (a PatchGAN on the mel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.audio.cvae.config import KIND, PRESETS, CvaeConfig
from worldmodel.command import train_command

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("cvae/mel_l1", "cvae/mel_l2", "cvae/kl", "cvae/kl_weight", "gen/cvae/mel_l1",
                "gen/cvae/kl", "gen/adv_loss", "gen/adv_weight")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=CvaeConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND,
                         data_module="worldmodel.audio.cvae.data",
                         training_module="worldmodel.audio.cvae.training",
                         summary_keys=SUMMARY_KEYS, aliases={"--gan": "--adversarial"})
