"""Train the mel vocoder (Vocos): ``python -m worldmodel.train vocoder
[--preset tiny|cpu|base|hifigan] [--gan] [--config FILE] [--any.config.field ...]``.

With no options: the ``tiny`` preset on 1 s crops of the embedded corpus at 16 kHz
(8 speakers held out for ``python -m worldmodel.eval vocoder``), log-mel L1 +
multi-resolution STFT losses; checkpoints, ``config.json`` and W&B offline logs in
``runs/<name>``. ``--gan`` adds the codecs' discriminators (MPD, MSD, complex STFT)
from ``gan.disc_start_step``. Short flags: ``--resume``, ``--steps N``,
``--batch-size N``, ``--run-name NAME``, ``--gan``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.audio.vocoder.config import KIND, PRESETS, VocoderConfig
from worldmodel.command import train_command

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("mel", "stft", "gen/mel", "gen/stft", "gen/adv_loss")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=VocoderConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND,
                         data_module="worldmodel.audio.vocoder.data",
                         training_module="worldmodel.audio.vocoder.training",
                         summary_keys=SUMMARY_KEYS, aliases={"--gan": "--adversarial"})
