"""The speaker encoder's model, loss and program: ECAPA-TDNN embeddings scored against
one learned weight vector per training speaker with AAM softmax."""

from __future__ import annotations

import jax
from flax import nnx

from common.losses.aam_softmax import aam_softmax_loss
from common.nn import axes as ax
from common.speech.ecapa import EcapaTdnn
from common.speech.features import log_mel_frames
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.audio.speaker.config import SpeakerEncoderConfig


class SpeakerClassifier(nnx.Module):
    """The encoder and the AAM softmax's class weights (training only: verification
    and conditioning use ``encoder`` alone).

    Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]`` -> embeddings ``[B, embed_dim]``;
    ``classes [num_speakers, embed_dim]``.
    """

    def __init__(self, cfg: SpeakerEncoderConfig, *, rngs: nnx.Rngs):
        self.encoder = EcapaTdnn(cfg.model, rngs=rngs)
        self.classes = ax.param(rngs, nnx.initializers.xavier_normal(),
                                (len(cfg.data.speakers), cfg.model.embed_dim),
                                (ax.VOCAB, ax.EMBED))

    def __call__(self, mel: jax.Array, valid: jax.Array) -> jax.Array:
        return self.encoder(mel, valid)


def make_loss(cfg: SpeakerEncoderConfig):
    """``loss_fn(model, batch, key)`` of the pipeline's batches (``audio``,
    ``audio_lengths``, ``speaker``, ``example_valid``)."""

    def loss_fn(model: SpeakerClassifier, batch, key):
        del key
        mel, valid = log_mel_frames(cfg.features, batch["audio"], batch["audio_lengths"])
        emb = model(mel, valid)
        return aam_softmax_loss(emb, model.classes[...], batch["speaker"],
                                batch["example_valid"], margin=cfg.margin, scale=cfg.scale)

    return loss_fn


def build_program(cfg: SpeakerEncoderConfig) -> Program:
    """The supervised program of a resolved config (its speaker table filled in)."""
    if not cfg.data.speakers:
        raise ValueError("build_program needs the speaker table: resolve_data(cfg) first")
    return supervised_program(lambda rngs: SpeakerClassifier(cfg, rngs=rngs), make_loss(cfg),
                              make_optimizer(resolve_optim(cfg.train)), seed=cfg.train.seed,
                              grad_accum=cfg.train.grad_accum)
