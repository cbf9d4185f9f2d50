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

from common.config import parse_config
from common.console import setup_console
from worldmodel.audio.sive.config import PRESETS, SiveConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

KIND = "worldmodel.sive"
ALIASES = {"--resume": "--train.resume", "--steps": "--train.steps",
           "--batch-size": "--data.batch-size", "--run-name": "--train.run-name"}


def run(cfg: SiveConfig) -> TrainResult:
    from common.train.loop import train
    from worldmodel.audio.sive.data import make_data, resolve_data
    from worldmodel.audio.sive.training import build_program

    cfg = resolve_data(cfg)
    train_data, eval_data = make_data(cfg)
    try:
        return train(cfg.train, kind=KIND, program=build_program(cfg), train_data=train_data,
                     eval_data=eval_data, config=cfg, samples_per_step=cfg.data.batch_size)
    finally:
        train_data.close()


def main(argv: Sequence[str] | None = None) -> TrainResult:
    setup_console()
    cfg = parse_config(SiveConfig, PRESETS, argv, description=__doc__, aliases=ALIASES)
    from common.train.loop import enable_compilation_cache
    from common.train.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()
    enable_compilation_cache()
    result = run(cfg)
    what = "stopped (checkpoint saved)" if result.stopped_by_signal else "done"
    last = {**(result.history[-1] if result.history else {}),
            **(result.eval_history[-1] if result.eval_history else {})}
    keys = ("sive/ctc", "sive/per", "sive/speaker_acc", "sive/reversal")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(last.items())
                      if any(k.endswith(x) for x in keys))
    print(f"{what} at step {result.step}: {shown}\nrun directory: {result.run_dir}",
          flush=True)
    return result
