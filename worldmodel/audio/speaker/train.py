"""Train the ECAPA-TDNN speaker encoder: ``python -m worldmodel.train speaker-encoder
[--preset tiny|base] [--config FILE] [--any.config.field VALUE ...]``.

With no options: the ``tiny`` preset on the embedded espeak corpus at 16 kHz (built into
the cache on first use), AAM softmax over the training split's speakers; checkpoints,
``config.json`` (with the speaker table) and W&B offline logs land in ``runs/<name>``.
``--resume`` continues the newest run exactly. Short flags: ``--resume``, ``--steps N``,
``--batch-size N``, ``--run-name NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from worldmodel.audio.speaker.config import KIND, PRESETS, SpeakerEncoderConfig
from worldmodel.command import train_command

if TYPE_CHECKING:
    from common.train.loop import TrainResult

SUMMARY_KEYS = ("aam/loss", "aam/accuracy", "aam/target_cos")


def main(argv: Sequence[str] | None = None) -> TrainResult:
    return train_command(argv, config_cls=SpeakerEncoderConfig, presets=PRESETS, doc=__doc__,
                         kind=KIND,
                         data_module="worldmodel.audio.speaker.data",
                         training_module="worldmodel.audio.speaker.training",
                         summary_keys=SUMMARY_KEYS)
