"""SIVE's model and loss.

    mel -> ContentEncoder -> features [B, T4, D] -> CTC head (phonemes)
                                 |
                                 +-> gradient reversal (-lambda) -> attentive statistics
                                     pooling -> BatchNorm -> Linear -> ReLU -> Linear
                                     -> speaker logits

The classifier learns to name the speaker; the reversed gradient trains the encoder to
defeat it, so the features keep what CTC needs and lose who spoke. The reversal factor
follows DANN's schedule (Ganin et al. 2016) ``a_max * (2 / (1 + exp(-10 p)) - 1)`` with
``p = min(step / warmup, 1)``: near 0 while the encoder learns phonemes, ``a_max`` after
warm-up. The step is the model's own count of training calls (``Sive.calls``, an
``nnx.Variable`` in the checkpointed state), so the schedule resumes exactly.

Loss: ``CTC + speaker_weight * CE(speaker)``; the classifier's CE is minimised by the
classifier and, through the reversal, maximised by the encoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.losses.ctc import ctc_loss
from common.losses.ctc_decode import phoneme_metrics
from common.nn import axes as ax
from common.nn.grad_reversal import gradient_reversal
from common.nn.linear import Linear
from common.nn.norms import batch_norm
from common.speech.config import ContentEncoderConfig
from common.speech.content import ContentEncoder, ContentOutput
from common.speech.pooling import AttentiveStatsPool
from worldmodel.audio.sive.config import AdversaryConfig


def dann_lambda(step: jax.Array, warmup_steps: int, a_max: float) -> jax.Array:
    """``a_max * (2 / (1 + exp(-10 p)) - 1)``, ``p = clip(step / warmup_steps, 0, 1)``."""
    p = jnp.clip(jnp.asarray(step, jnp.float32) / max(warmup_steps, 1), 0.0, 1.0)
    return a_max * (2.0 / (1.0 + jnp.exp(-10.0 * p)) - 1.0)


class Sive(nnx.Module):
    """Content encoder + adversarial speaker classifier.

    Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]`` -> ``(ContentOutput, speaker logits
    [B, num_speakers])``.
    """

    def __init__(self, encoder: ContentEncoderConfig, adversary: AdversaryConfig,
                 num_speakers: int, *, rngs: nnx.Rngs):
        self.adversary_cfg = adversary
        self.encoder = ContentEncoder(encoder, rngs=rngs)
        width = encoder.dim if adversary.frames else 2 * encoder.dim
        self.pool = None if adversary.frames else AttentiveStatsPool(
            encoder.dim, adversary.attention_channels, rngs=rngs)
        self.pool_norm = batch_norm(width, rngs=rngs) if adversary.pool_norm else None
        self.hidden = Linear(width, adversary.hidden, axes=(ax.EMBED, ax.MLP),
                             use_bias=True, rngs=rngs)
        self.classify = Linear(adversary.hidden, num_speakers, axes=(ax.MLP, ax.VOCAB),
                               use_bias=True, rngs=rngs)
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))

    def reversal(self) -> jax.Array:
        a = self.adversary_cfg
        return dann_lambda(self.calls[...], a.warmup_steps, a.a_max)

    def __call__(self, mel: jax.Array, valid: jax.Array,
                 reversal: jax.Array | float | None = None
                 ) -> tuple[ContentOutput, jax.Array]:
        out = self.encoder(mel, valid)
        lam = self.reversal() if reversal is None else reversal
        return out, self.classify_speaker(gradient_reversal(out.features, lam), out.valid)

    def classify_speaker(self, features: jax.Array, valid: jax.Array) -> jax.Array:
        """The adversary alone: ``features [B, T, D]``, ``valid [B, T]`` -> speaker
        logits ``[B, num_speakers]`` (``[B, T, num_speakers]`` with ``frames``)."""
        if self.pool is None:
            h, mask = features, valid[..., None]
        else:
            h, mask = self.pool(features, valid), jnp.any(valid, axis=1, keepdims=True)
        if self.pool_norm is not None:  # statistics over real frames / rows only
            h = self.pool_norm(h, mask=mask)
        return self.classify(jax.nn.relu(self.hidden(h)))


def sive_loss(model: Sive, mel: jax.Array, valid: jax.Array, phonemes: jax.Array,
              phonemes_valid: jax.Array, speaker: jax.Array, example_valid: jax.Array,
              *, train: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``CTC + speaker_weight * CE`` and metrics; in training the call counter advances
    (the reversal schedule's step). Rows whose transcript is not whole
    (``phonemes_valid`` all False) are left out of CTC, padding rows of both terms."""
    lam = model.reversal()
    out, spk_logits = model(mel, valid, reversal=lam)
    has_text = jnp.any(phonemes_valid, axis=-1) & example_valid
    ctc, _ = ctc_loss(out.logits, out.logit_valid, phonemes, phonemes_valid,
                          sequence_valid=has_text)
    # Utterance logits [B, S], or frame logits [B, T, S] scored on the valid frames.
    weight_mask = example_valid if spk_logits.ndim == 2 else out.valid & example_valid[:, None]
    target = speaker if spk_logits.ndim == 2 else jnp.broadcast_to(
        speaker[:, None], spk_logits.shape[:2])
    logp = jax.nn.log_softmax(spk_logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    n = jnp.maximum(jnp.sum(weight_mask, dtype=jnp.float32), 1.0)
    ce = jnp.sum(jnp.where(weight_mask, nll, 0.0)) / n
    acc = jnp.sum(jnp.where(weight_mask, jnp.argmax(spk_logits, -1) == target, 0.0)) / n
    weight = model.adversary_cfg.speaker_weight
    if train:
        model.calls[...] = model.calls[...] + 1
    per = phoneme_metrics(out.logits, out.logit_valid, phonemes,
                          phonemes_valid & has_text[:, None])
    return ctc + weight * ce, {"sive/ctc": ctc, "sive/speaker_ce": ce,
                               "sive/speaker_acc": acc, "sive/reversal": lam,
                               **{f"sive/{k}": v for k, v in per.items()}}
