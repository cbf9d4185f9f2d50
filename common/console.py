"""What a command prints: one log format for every entry point, and the libraries'
start-up chatter kept out of the console.

Entry points call ``setup_console(verbose)`` first thing in ``main``. Unless ``verbose``
(or ``TRC_VERBOSE=1``) it silences lines every run prints and nobody acts on:

- JAX probing for a TPU at the first device query: ``jax._src.xla_bridge`` logs
  "Unable to initialize backend 'tpu': ... libtpu.so ..." at INFO on every non-TPU
  machine.
- ``datasets`` announcing "JAX version X available." at INFO while it is imported (its
  logger gets its WARNING default only after that line).
- orbax, through absl: per-call INFO lines (a WARNING level keeps them out) and the
  WARNINGs "CheckpointManagerOptions.read_only=True, setting create=False." (one per
  adjusted option) and "Given directory is read only=..." whenever a checkpoint is
  opened for reading, which every inference command does.
- wandb's four-line banner at ``wandb.init`` ("Tracking run with wandb version ...",
  "W&B syncing is set to `offline` ..."): ``WANDB_SILENT=true`` unless already set;
  ``common.train.logging`` prints the run's W&B directory itself.

Real warnings and errors of these libraries still show. This module imports only the
standard library (it sits beside ``common.config``, below ``common.data`` and
``common.train``) so calling it costs nothing before the flags are parsed.
"""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
VERBOSE_ENV = "TRC_VERBOSE"

# Loggers whose INFO lines are start-up chatter (see the module doc).
CHATTY_LOGGERS = ("absl", "jax._src.xla_bridge", "datasets")
# Routine WARNINGs of orbax through absl: opening a checkpoint to read it.
ROUTINE_WARNINGS = ("Given directory is read only", "CheckpointManagerOptions.read_only=True")


class _RoutineFilter(logging.Filter):
    """Drops records whose message starts with one of ``ROUTINE_WARNINGS``."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not msg.startswith(ROUTINE_WARNINGS)


_FILTER = _RoutineFilter()
_WANDB_SILENT = "WANDB_SILENT"
_set_wandb_silent = False  # whether we set it (verbose undoes only our own setting)


def verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the chatter of ``CHATTY_LOGGERS`` (or, verbose, let all of it through)."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET if verbose else logging.WARNING)
        if verbose:
            logger.removeFilter(_FILTER)
        else:
            logger.addFilter(_FILTER)  # a no-op when it is already there
    global _set_wandb_silent
    if verbose and _set_wandb_silent:
        os.environ.pop(_WANDB_SILENT, None)
        _set_wandb_silent = False
    elif not verbose and _WANDB_SILENT not in os.environ:
        os.environ[_WANDB_SILENT] = "true"
        _set_wandb_silent = True


def setup_console(verbose: bool = False) -> bool:
    """INFO logs as ``HH:MM:SS name: message`` on stderr, library chatter silenced unless
    ``verbose`` or ``TRC_VERBOSE=1``. Call before importing jax, datasets or orbax (their
    import-time lines come first). Returns whether verbose is on."""
    verbose = verbose or verbose_from_env()
    logging.basicConfig(level=logging.INFO, format=FORMAT, datefmt=DATEFMT, force=True)
    quiet_libraries(verbose)
    return verbose
