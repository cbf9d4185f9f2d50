"""The CVAE's program: the CVAE with the frozen encoders it reads, its loss on pipeline
batches, one AdamW over the CVAE alone; with ``adversarial`` (``--gan``) the GAN of
``common.train.gan`` with a PatchGAN on the mel (``common.nn.patchgan``), the CVAE's
loss as the reconstruction term.

The content encoder (SIVE's, with its CTC head) and the speaker encoder (ECAPA-TDNN)
are loaded from their runs into the trained module and frozen: the optimizer leaves
them out (``freeze``), their outputs are cut from the gradient, and they run in
inference mode (batch norm on its running statistics). They are checkpointed with the
CVAE, so a CVAE run alone rebuilds everything its evaluation needs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from common.config import config_from_dict
from common.nn.patchgan import PatchGAN, patch_disc_fn
from common.speech.content import ContentEncoder
from common.speech.ecapa import EcapaTdnn
from common.speech.features import log_mel_frames
from common.train.checkpoint import load_model
from common.train.gan import disc_optim, gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.audio.cvae.config import CvaeConfig
from worldmodel.audio.cvae.loss import cvae_loss
from worldmodel.audio.cvae.model import AudioCvae

FROZEN = r"^(content|speaker)/"  # parameter paths the optimizer leaves alone


class CvaeTrainee(nnx.Module):
    """The CVAE, the frozen encoders it reads and its training-call counter (the KL
    warm-up's step, checkpointed, so a resumed run continues the schedule)."""

    def __init__(self, cfg: CvaeConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.cvae = AudioCvae(cfg.model, rngs=rngs)
        self.content = ContentEncoder(cfg.content, rngs=rngs)
        self.speaker = EcapaTdnn(cfg.speaker, rngs=rngs)
        self.content.eval()
        self.speaker.eval()
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))

    def conditioning(self, audio: jax.Array, lengths: jax.Array,
                     content: jax.Array | None = None, speaker: jax.Array | None = None
                     ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``audio [B, N]`` left-padded -> ``(mel [B, T, F], valid [B, T], content
        [B, T4, C], speaker embedding [B, S] of unit length)``, no gradient to the
        encoders. ``content`` and ``speaker`` given (precomputed, the batch's
        ``sive_features`` and ``speaker_embedding``) replace the encoders' outputs."""
        cfg = self.cfg
        mel, valid = log_mel_frames(cfg.features, audio, lengths)
        if content is None:
            content = self.content(mel, valid).features
        if speaker is None:
            smel, svalid = ((mel, valid) if cfg.speaker_features == cfg.features
                            else log_mel_frames(cfg.speaker_features, audio, lengths))
            speaker = self.speaker(smel, svalid)
        content, emb = jax.lax.stop_gradient(content), jax.lax.stop_gradient(speaker)
        emb = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-6)
        return mel, valid, content, emb


def reconstruct(model: CvaeTrainee, batch, key: jax.Array, cfg: CvaeConfig):
    """One training pass on a pipeline batch (``audio``, ``audio_lengths``, ``f0``,
    ``voiced``; ``sive_features`` and ``speaker_embedding`` when precomputed) ->
    ``(reconstruction [B, T, F], mel [B, T, F], valid [B, T], loss, metrics)``; counts
    the call (the KL warm-up's step)."""
    mel, valid, content, emb = model.conditioning(
        batch["audio"], batch["audio_lengths"], batch.get("sive_features"),
        batch.get("speaker_embedding"))
    out = model.cvae(mel, valid, content, emb, batch["f0"], batch["voiced"], key=key)
    step = model.calls[...]
    model.calls[...] = step + 1
    loss, metrics = cvae_loss(out, mel, valid, step, cfg.loss)
    return out.mel, mel, valid, loss, metrics


def make_loss(cfg: CvaeConfig):
    """``loss_fn(model, batch, key)`` of the supervised program (see ``reconstruct``)."""

    def loss_fn(model: CvaeTrainee, batch, key):
        return reconstruct(model, batch, key, cfg)[3:]

    return loss_fn


def load_encoders(cfg: CvaeConfig) -> tuple[nnx.State, nnx.State]:
    """The trained weights of SIVE's content encoder and of the speaker encoder, from
    the runs of a resolved config."""
    from worldmodel.audio.sive.config import SiveConfig
    from worldmodel.audio.sive.model import Sive
    from worldmodel.audio.speaker.config import SpeakerEncoderConfig
    from worldmodel.audio.speaker.training import SpeakerClassifier

    def sive(d):
        c = config_from_dict(SiveConfig, d)
        return Sive(c.encoder, c.adversary, len(c.data.speakers), rngs=nnx.Rngs(0))

    def speaker(d):
        return SpeakerClassifier(config_from_dict(SpeakerEncoderConfig, d), rngs=nnx.Rngs(0))

    s, _ = load_model(cfg.sive_run, sive)
    k, _ = load_model(cfg.speaker_run, speaker)
    return nnx.state(s.encoder), nnx.state(k.encoder)


def build_program(cfg: CvaeConfig,
                  encoders: tuple[nnx.State, nnx.State] | None = None) -> Program:
    """The supervised program of a resolved config; ``encoders`` (default: loaded from
    the config's runs) are the frozen content and speaker encoders' weights."""
    if not cfg.sive_run or not cfg.speaker_run:
        raise ValueError("build_program needs the SIVE and speaker-encoder runs: "
                         "resolve_data(cfg) first")
    content, speaker = encoders or load_encoders(cfg)

    def build(rngs: nnx.Rngs) -> CvaeTrainee:
        model = CvaeTrainee(cfg, rngs=rngs)
        nnx.update(model.content, content)
        nnx.update(model.speaker, speaker)
        return model

    optim = resolve_optim(cfg.train)
    tx = make_optimizer(dataclasses.replace(optim, freeze=(*optim.freeze, FROZEN)))
    if not cfg.adversarial:
        return supervised_program(build, make_loss(cfg), tx, seed=cfg.train.seed,
                                  grad_accum=cfg.train.grad_accum)

    def gen_fn(model: CvaeTrainee, batch, key):
        fake, real, valid, loss, metrics = reconstruct(model, batch, key, cfg)
        return fake, real, loss, metrics, valid

    disc_tx = make_optimizer(disc_optim(cfg.train, cfg.disc_optim, cfg.gan))
    return gan_program(build, lambda rngs: PatchGAN(cfg.disc, rngs=rngs), gen_fn,
                       patch_disc_fn, tx, disc_tx, cfg.gan, seed=cfg.train.seed,
                       grad_accum=cfg.train.grad_accum)
