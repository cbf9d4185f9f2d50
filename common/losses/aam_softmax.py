"""Additive angular margin softmax (ArcFace, Deng et al. 2019), the speaker encoders'
classification loss, with SpeechBrain's ``AdditiveAngularMargin`` arithmetic.

The logit of class k is ``scale * cos(theta_k)`` with ``theta_k`` the angle between the
L2-normalised embedding and class weight; for the target class the margin is added to
the angle: ``scale * cos(theta_y + margin)``. Past ``theta_y = pi - margin`` (where
``cos(theta + m)`` would turn back up) the target logit continues as
``cos(theta_y) - margin * sin(margin)`` (ArcFace's "hard" variant); ``easy_margin``
instead keeps the plain cosine wherever it is negative.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

NORM_EPS = 1e-12  # torch.nn.functional.normalize's
SIN_SQ_FLOOR = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / max(||x||, 1e-12)`` along ``axis`` (torch's ``F.normalize``)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, NORM_EPS)


def cosine_logits(embeddings: jax.Array, class_weights: jax.Array) -> jax.Array:
    """``[B, D] x [K, D] -> [B, K]`` cosines, in float32, clipped to [-1, 1]."""
    e = l2_normalize(embeddings.astype(jnp.float32))
    w = l2_normalize(class_weights.astype(jnp.float32))
    return jnp.clip(e @ w.T, -1.0, 1.0)


def aam_softmax_loss(
    embeddings: jax.Array,
    class_weights: jax.Array,
    labels: jax.Array,
    example_valid: jax.Array | None = None,
    *,
    margin: float = 0.2,
    scale: float = 30.0,
    easy_margin: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy of the margin logits over the valid examples.

    Shapes: ``embeddings [B, D]``, ``class_weights [K, D]``, ``labels [B]`` int in
    ``[0, K)``, ``example_valid [B]`` bool (None: all). Returns ``(loss, metrics)`` with
    ``aam/loss``, ``aam/accuracy`` (nearest class by plain cosine, what verification and
    identification use) and ``aam/target_cos`` (mean cosine to the own class).
    """
    cos = cosine_logits(embeddings, class_weights)
    # The floor changes nothing but |cos| == 1 exactly (float32 puts 1 - cos^2 at 0 or
    # above ~1e-7), where sqrt's infinite slope would make the gradient NaN: an
    # embedding equal to its class weight.
    sin = jnp.sqrt(jnp.clip(1.0 - jnp.square(cos), SIN_SQ_FLOOR, 1.0))
    phi = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        phi = jnp.where(cos > 0, phi, cos)
    else:
        phi = jnp.where(cos > math.cos(math.pi - margin), phi,
                        cos - math.sin(math.pi - margin) * margin)
    target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
    logits = scale * jnp.where(target, phi, cos)
    nll = -jnp.sum(jax.nn.log_softmax(logits, axis=-1) * target, axis=-1)  # [B]
    valid = (jnp.ones(nll.shape, bool) if example_valid is None
             else jnp.asarray(example_valid, bool))
    n = jnp.maximum(jnp.sum(valid, dtype=jnp.float32), 1.0)
    mean = lambda v: jnp.sum(jnp.where(valid, v, 0.0)) / n
    loss = mean(nll)
    metrics = {
        "aam/loss": loss,
        "aam/accuracy": mean((jnp.argmax(cos, axis=-1) == labels).astype(jnp.float32)),
        "aam/target_cos": mean(jnp.sum(jnp.where(target, cos, 0.0), axis=-1)),
    }
    return loss, metrics
