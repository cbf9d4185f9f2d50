"""SIVE's program: the model and loss of ``worldmodel.audio.sive.model`` on pipeline
batches, one AdamW over encoder and adversary (the reversal makes them adversaries)."""

from __future__ import annotations

from common.speech.features import log_mel_frames
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.audio.sive.config import SiveConfig
from worldmodel.audio.sive.model import Sive, sive_loss


def build_program(cfg: SiveConfig) -> Program:
    """The supervised program of a resolved config (vocabulary and speakers filled in)."""
    if not cfg.encoder.vocab or not cfg.data.speakers:
        raise ValueError("build_program needs the phoneme vocabulary and the speaker "
                         "table: resolve_data(cfg) first")

    def loss_fn(model: Sive, batch, key):
        del key
        mel, valid = log_mel_frames(cfg.features, batch["audio"], batch["audio_lengths"])
        return sive_loss(model, mel, valid, batch["phonemes"], batch["phonemes_valid"],
                         batch["speaker"], batch["example_valid"])

    return supervised_program(
        lambda rngs: Sive(cfg.encoder, cfg.adversary, len(cfg.data.speakers), rngs=rngs),
        loss_fn, make_optimizer(resolve_optim(cfg.train)), seed=cfg.train.seed,
        grad_accum=cfg.train.grad_accum)
