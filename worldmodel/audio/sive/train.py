"""Train SIVE, the speaker-invariant voice encoder: ``python -m worldmodel.train
audio-sive [--preset tiny|base] [--config FILE] [--any.config.field VALUE ...]``.

With no options: the ``tiny`` preset on the embedded corpus at 16 kHz (8 speakers held
out), CTC over the corpus phonemes plus the reversed speaker adversary; checkpoints,
``config.json`` (vocabulary path and speaker table) and W&B offline logs in
``runs/<name>``. Short flags: ``--resume``, ``--steps N``, ``--batch-size N``,
``--run-name NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.audio.sive.config import KIND, PRESETS, SiveConfig
from worldmodel.command import train_command

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("sive/ctc", "sive/per", "sive/speaker_acc", "sive/reversal")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=SiveConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND,
                         data_module="worldmodel.audio.sive.data",
                         training_module="worldmodel.audio.sive.training",
                         summary_keys=SUMMARY_KEYS)
