"""Train the alpha codec: ``python -m tokenizer.alpha.train [--preset tiny|small|base]
[--config FILE] [--any.config.field VALUE ...]``.

With no arguments: the ``tiny`` preset on the embedded espeak corpus (built into the
cache on first use), on whatever devices JAX sees; a checkpoint, ``config.json`` and
W&B offline logs (scalars, audio before/after, spectrograms) land in ``runs/<name>``.
``--train.resume`` continues the newest run exactly (weights, both optimizers, data
position); SIGTERM saves a checkpoint first. Short flags: ``--resume``, ``--steps N``,
``--batch-size N``, ``--run-name NAME``, ``--bf16`` (the codec computes in bfloat16).
Examples::

    python -m tokenizer.alpha.train --preset small --train.mesh.data -1
    python -m tokenizer.alpha.train --data.source.kind folder --data.source.path DIR \\
        --data.phoneme-vocab vocab.json
    python -m tokenizer.alpha.train --resume --steps 500
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common.config import parse_config
from common.console import setup_console
from tokenizer.alpha.config import PRESETS, AlphaConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

log = logging.getLogger("tokenizer.alpha.train")

ALIASES = {"--resume": "--train.resume", "--steps": "--train.steps",
           "--batch-size": "--data.batch-size", "--run-name": "--train.run-name",
           "--bf16": "--codec.dtype=bfloat16"}
SUMMARY_KEYS = ("gen/mel", "gen/ctc", "gen/rec_loss", "disc/loss")


def run(cfg: AlphaConfig) -> TrainResult:
    """Train with a complete config (resolves the data-dependent fields first)."""
    from common.train.loop import train
    from tokenizer.alpha.data import make_data, resolve_data
    from tokenizer.alpha.model import bitrate
    from tokenizer.alpha.training import build_program, log_examples
    from tokenizer.codec.train_logging import first_batch

    cfg = resolve_data(cfg)
    log.info("alpha codec: %.0f Hz frames, %.0f bit/s", cfg.frame_rate, bitrate(cfg))
    train_data, eval_data = make_data(cfg)
    examples = first_batch(eval_data)

    def on_log(step, codec, metrics, logger):
        if logger.should_log_media(step) or step == cfg.train.steps:
            log_examples(step, codec, examples, logger, cfg)

    try:
        return train(cfg.train, kind="tokenizer.alpha", program=build_program(cfg),
                     train_data=train_data, eval_data=eval_data, config=cfg,
                     samples_per_step=cfg.data.batch_size, on_log=on_log)
    finally:
        train_data.close()


def main(argv: Sequence[str] | None = None) -> TrainResult:
    setup_console()
    cfg = parse_config(AlphaConfig, PRESETS, argv, description=__doc__, aliases=ALIASES)
    # The heavy stacks load after parsing: --help and flag errors answer at once.
    from common.train.curves import summarize
    from common.train.loop import enable_compilation_cache
    from common.train.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()
    enable_compilation_cache()
    result = run(cfg)
    what = "stopped (checkpoint saved)" if result.stopped_by_signal else "done"
    print(f"{what} at step {result.step}: {summarize(result.history, SUMMARY_KEYS)}\n"
          f"run directory: {result.run_dir} (checkpoints in {result.run_dir}/checkpoints, "
          f"W&B offline logs in {result.run_dir}/wandb, config.json)", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
