"""setup_console: library start-up chatter silenced, TRC_VERBOSE=1 keeps it."""

import logging
import os

import pytest
from absl import logging as absl_logging

from common.console import CHATTY_LOGGERS, setup_console


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def captured():
    """Handlers on the chatty loggers themselves (a logger's level and filters decide
    before its handlers run); the root logger's handlers and all levels restored after,
    since setup_console replaces pytest's."""
    root = logging.getLogger()
    saved_root = (root.level, root.handlers[:])
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).filters[:])
             for n in CHATTY_LOGGERS}
    handler = ListHandler()
    for n in CHATTY_LOGGERS:
        logging.getLogger(n).addHandler(handler)
    yield handler.messages
    for n, (level, filters) in saved.items():
        logger = logging.getLogger(n)
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.filters[:] = filters
    for h in root.handlers[:]:
        root.removeHandler(h)
    root.setLevel(saved_root[0])
    for h in saved_root[1]:
        root.addHandler(h)


def chatter():
    logging.getLogger("jax._src.xla_bridge").info(
        "Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so")
    logging.getLogger("datasets").info("JAX version 0.10.2 available.")
    absl_logging.info("[process=0] Created CheckpointManager")
    absl_logging.warning("CheckpointManagerOptions.read_only=True, setting create=False.")
    absl_logging.warning("Given directory is read only=%s", "runs/x/checkpoints")


def test_chatter_silenced_real_warnings_kept(captured, monkeypatch):
    monkeypatch.delenv("TRC_VERBOSE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    assert setup_console() is False
    assert os.environ["WANDB_SILENT"] == "true"
    chatter()
    assert captured == []
    absl_logging.warning("checkpoint 5 is not finalized")
    logging.getLogger("jax._src.xla_bridge").warning("An NVIDIA GPU may be present")
    assert captured == ["checkpoint 5 is not finalized", "An NVIDIA GPU may be present"]
    assert logging.getLogger("common.data.corpus").isEnabledFor(logging.INFO)


@pytest.mark.parametrize("how", ["env", "flag"])
def test_verbose_keeps_everything(captured, monkeypatch, how):
    monkeypatch.delenv("TRC_VERBOSE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    setup_console()  # quiet first: verbose must undo it
    if how == "env":
        monkeypatch.setenv("TRC_VERBOSE", "1")
    assert setup_console(verbose=how == "flag") is True
    assert "WANDB_SILENT" not in os.environ
    chatter()
    assert captured == [
        "Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so",
        "JAX version 0.10.2 available.",
        "[process=0] Created CheckpointManager",
        "CheckpointManagerOptions.read_only=True, setting create=False.",
        "Given directory is read only=runs/x/checkpoints",
    ]
