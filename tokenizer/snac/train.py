"""Train or fine-tune SNAC: ``python -m tokenizer.snac.train [--preset tiny|finetune-24khz|
24khz] [--init-from RUN_OR_MODEL_DIR] [--freeze encoder quantizer] [--any.field VALUE ...]``.

With no arguments: the ``tiny`` preset from scratch on the embedded espeak corpus,
through a three-stage segment curriculum (0.25 s x 8 -> 0.5 s x 4 -> 1 s x 2), on
whatever devices JAX sees. Fine-tuning the published 24 kHz model on your own data::

    python -m tokenizer.snac.convert snac_24khz/ runs/snac24-converted
    python -m tokenizer.snac.train --preset finetune-24khz \\
        --init-from runs/snac24-converted --data.source.kind folder --data.source.path DIR

``finetune-24khz`` freezes the encoder and quantizer (the codes stay those of the
published model; only the decoder learns). The best checkpoint by ``eval/loss`` is kept
besides the latest (``--step best`` in infer). ``--resume`` continues exactly (stage,
batch, weights, optimizer); SIGTERM saves first. Short flags: ``--resume``,
``--steps N``, ``--batch-size N``, ``--run-name NAME``, ``--init-from DIR``, ``--bf16``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common.config import parse_config
from common.console import setup_console
from tokenizer.snac.train_config import PRESETS, SnacConfig

if TYPE_CHECKING:
    from common.train.loop import TrainResult

log = logging.getLogger("tokenizer.snac.train")

ALIASES = {"--resume": "--train.resume", "--steps": "--train.steps",
           "--batch-size": "--data.batch-size", "--run-name": "--train.run-name",
           "--bf16": "--model.dtype=bfloat16"}
SUMMARY_KEYS = ("wav_l1", "stft", "commitment", "gen/wav_l1", "gen/stft")


def log_examples(step: int, codec, batch, logger, cfg: SnacConfig, n: int = 2) -> None:
    """Audio before/after and log-mel spectrograms of the first ``n`` utterances."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from tokenizer.codec.train_logging import log_reconstructions

    wav = np.asarray(batch["audio"][:n])
    recon = np.asarray(nnx.jit(lambda c, w: c(w).recon)(codec, jnp.asarray(wav)))
    log_reconstructions(step, logger, wav, recon, np.asarray(batch["audio_valid"][:n]),
                        cfg.model.sampling_rate)


def run(cfg: SnacConfig) -> TrainResult:
    """Train with a complete config (resolves data and starting weights first)."""
    from common.train.loop import train
    from tokenizer.codec.train_logging import first_batch
    from tokenizer.snac.training import build_program, initial_weights, make_data, resolve_data

    cfg, weights = initial_weights(resolve_data(cfg))
    m = cfg.model
    log.info("SNAC %d Hz: codes at %s Hz, %.2f kbit/s; frozen: %s", m.sampling_rate,
             " / ".join(f"{r:.1f}" for r in m.code_rates), m.bitrate / 1000,
             ", ".join(cfg.freeze) or "nothing")
    train_data, eval_data = make_data(cfg)
    examples = first_batch(eval_data)

    def on_log(step, codec, metrics, logger):
        if logger.should_log_media(step) or step == cfg.train.steps:
            log_examples(step, codec, examples, logger, cfg)

    try:
        return train(cfg.train, kind="tokenizer.snac", init_from=cfg.init_from or None,
                     program=build_program(cfg, weights), train_data=train_data,
                     eval_data=eval_data, config=cfg, on_log=on_log)
    finally:
        train_data.close()


def main(argv: Sequence[str] | None = None) -> TrainResult:
    setup_console()
    cfg = parse_config(SnacConfig, PRESETS, argv, description=__doc__, aliases=ALIASES)
    # The heavy stacks load after parsing: --help and flag errors answer at once.
    from common.train.curves import summarize
    from common.train.loop import enable_compilation_cache
    from common.train.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()
    enable_compilation_cache()
    result = run(cfg)
    what = "stopped (checkpoint saved)" if result.stopped_by_signal else "done"
    best = [h for h in result.eval_history if "eval/loss" in h]
    best_txt = (f"; best eval/loss {min(h['eval/loss'] for h in best):.4f}" if best else "")
    print(f"{what} at step {result.step}: {summarize(result.history, SUMMARY_KEYS)}{best_txt}\n"
          f"run directory: {result.run_dir} (checkpoints in {result.run_dir}/checkpoints, "
          f"W&B offline logs in {result.run_dir}/wandb, config.json)", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
