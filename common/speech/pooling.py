"""Masked statistics pooling over time (x-vector / ECAPA-TDNN).

``masked_mean_std`` is SpeechBrain's ``_compute_statistics`` (weighted mean, and the
standard deviation ``sqrt(max(sum w (x - mean)^2, eps))``) with the weights restricted
to valid frames; ``AttentiveStatsPool`` is ECAPA-TDNN's channel- and context-dependent
attentive statistics pooling (Desplanques et al. 2020, Sec. 3.3; SpeechBrain's
``AttentiveStatisticsPooling``). Padding frames get zero weight, so a left- or
right-padded batch pools exactly what each unpadded utterance would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.conv import Conv
from common.nn.norms import batch_norm

STD_EPS = 1e-12  # SpeechBrain's clamp inside the square root


def masked_mean_std(x: jax.Array, weights: jax.Array, eps: float = STD_EPS
                    ) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and standard deviation over time.

    Shapes: ``x [B, T, C]``, ``weights [B, T, 1]`` or ``[B, T, C]`` (summing to 1 over
    the valid frames, zero on padding) -> ``mean, std [B, C]`` in float32.
    """
    x = x.astype(jnp.float32)
    w = weights.astype(jnp.float32)
    mean = jnp.sum(w * x, axis=1)
    var = jnp.sum(w * jnp.square(x - mean[:, None, :]), axis=1)
    return mean, jnp.sqrt(jnp.maximum(var, eps))


def uniform_weights(valid: jax.Array) -> jax.Array:
    """``valid [B, T]`` -> ``[B, T, 1]``: 1 / (valid frames) on valid frames, 0 elsewhere."""
    v = valid.astype(jnp.float32)
    return (v / jnp.maximum(jnp.sum(v, axis=1, keepdims=True), 1.0))[..., None]


class AttentiveStatsPool(nnx.Module):
    """Attentive statistics pooling: per-channel attention over time, then the
    attention-weighted mean and standard deviation, concatenated.

    With ``global_context`` the attention also sees the utterance's (masked) mean and
    standard deviation broadcast over time. The attention MLP is SpeechBrain's:
    1x1 conv -> ReLU -> BatchNorm -> tanh -> 1x1 conv back to ``channels``.

    Shapes: ``x [B, T, channels]``, ``valid [B, T]`` -> ``[B, 2 * channels]`` (float32).
    """

    def __init__(self, channels: int, attention_channels: int = 128, *,
                 global_context: bool = True, rngs: nnx.Rngs):
        self.channels = channels
        self.global_context = global_context
        in_ch = 3 * channels if global_context else channels
        self.hidden = Conv(in_ch, attention_channels, 1, rngs=rngs)
        self.norm = batch_norm(attention_channels, rngs=rngs)
        self.score = Conv(attention_channels, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        mask = valid[..., None]
        x = x.astype(jnp.float32)
        h = x
        if self.global_context:
            mean, std = masked_mean_std(x, uniform_weights(valid))
            h = jnp.concatenate([x, jnp.broadcast_to(mean[:, None], x.shape),
                                 jnp.broadcast_to(std[:, None], x.shape)], axis=-1)
        h = self.norm(jax.nn.relu(self.hidden(h)), mask=mask)
        logits = self.score(jnp.tanh(h))
        # A large finite fill, not -inf: a row without valid frames gets zero weights
        # instead of NaNs.
        attn = jax.nn.softmax(jnp.where(mask, logits, -1e30), axis=1) * mask
        mean, std = masked_mean_std(x, attn)
        return jnp.concatenate([mean, std], axis=-1)
