"""Vector quantization with factorised, l2-normalised codes (Yu et al. 2022, DAC).

``z [B, T, D]`` is projected to a low dimension ``d`` (``codebook_dim``), optionally
l2-normalised, and matched to the nearest of ``K`` codes (cosine similarity when
normalised, else Euclidean distance); the code is projected back to ``D``. Low ``d`` and
normalisation keep codebook usage high (the lookup becomes a cosine match on a sphere).

Codebooks are either learned by gradient (codebook loss ``|sg(e) - c|^2``) or kept as
exponential moving averages of their assigned vectors (van den Oord et al. 2017,
appendix; SoundStream): the EMA state lives in ``CodebookState`` variables, updated in
the forward pass while training (``model.eval()`` stops the updates), with dead-code
restart: a code whose EMA count falls below ``dead_code_threshold`` is reset to a random
valid input vector of the batch. Both modes add the commitment loss ``|e - sg(c)|^2``.

The similarity scores are also returned as ``logits [B, T, K]`` (scaled by a learned
temperature), so a codebook can be trained as a classifier, as the phoneme stage is.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from tokenizer.alpha.components.quantizers.base import (
    QuantizerOutput,
    code_histogram,
    masked_mse,
    straight_through,
    usage_metrics,
    valid_weights,
)


class CodebookState(nnx.Variable):
    """Non-gradient codebook state (EMA sums and counts); lives in the train state's
    ``rest``, so the step carries it and checkpoints save it."""


def unit_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``x / |x|`` over the last axis, float32 (safe at 0)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


class VectorQuantizer(nnx.Module):
    """One codebook. Shapes: ``z [B, T, D]``, valid ``[B, T]`` -> ``QuantizerOutput``
    with codes ``[B, T, 1]`` and logits ``[B, T, K]``."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int = 8, *,
                 l2_normalize: bool = True, ema: bool = False, decay: float = 0.99,
                 dead_code_threshold: float = 0.0, init_logit_scale: float = 10.0,
                 rngs: nnx.Rngs):
        self.dim, self.codebook_size, self.codebook_dim = dim, codebook_size, codebook_dim
        self.normalize, self.ema, self.decay = l2_normalize, ema, decay
        self.dead_code_threshold = dead_code_threshold
        self.use_running_average = False  # model.eval() sets True: no EMA updates
        self.in_proj = Linear(dim, codebook_dim, axes=(ax.EMBED, None), use_bias=True,
                              rngs=rngs)
        self.out_proj = Linear(codebook_dim, dim, axes=(None, ax.EMBED), use_bias=True,
                               rngs=rngs)
        init = jax.random.normal(rngs.params(), (codebook_size, codebook_dim), jnp.float32)
        if l2_normalize:
            init = unit_norm(init)
        if ema:
            self.embed_sum = CodebookState(init)
            self.cluster_size = CodebookState(jnp.ones((codebook_size,), jnp.float32))
        else:
            self.codebook = ax.wrap(init, (ax.VOCAB, None))
        # log of the logit temperature: cosine similarities in [-1, 1] need scaling to
        # act as classification logits.
        self.log_scale = ax.wrap(jnp.full((), math.log(init_logit_scale), jnp.float32), ())

    # -- codebook -------------------------------------------------------------------

    def codes_table(self) -> jax.Array:
        """float32 ``[K, d]``: the codebook as the lookup sees it."""
        if self.ema:
            n = self.cluster_size[...]
            # Laplace smoothing keeps an unused code's vector finite.
            total = jnp.sum(n)
            smoothed = (n + 1e-5) / (total + self.codebook_size * 1e-5) * total
            table = self.embed_sum[...] / smoothed[:, None]
        else:
            table = self.codebook[...]
        return unit_norm(table) if self.normalize else table.astype(jnp.float32)

    def scores(self, e: jax.Array, table: jax.Array) -> jax.Array:
        """``[B, T, K]`` similarity of projected latents ``e`` to every code."""
        if self.normalize:
            return jnp.einsum("btd,kd->btk", e, table)
        return -(jnp.sum(e * e, -1, keepdims=True) - 2 * jnp.einsum("btd,kd->btk", e, table)
                 + jnp.sum(table * table, -1))

    def project(self, z: jax.Array) -> jax.Array:
        e = self.in_proj(z).astype(jnp.float32)
        return unit_norm(e) if self.normalize else e

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """int ``[B, T]`` -> ``[B, T, D]``."""
        return self.out_proj(self.codes_table()[codes])

    # -- forward --------------------------------------------------------------------

    def __call__(self, z: jax.Array, valid: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> QuantizerOutput:
        w = valid_weights(valid, z.shape)
        e = self.project(z)
        table = self.codes_table()
        sim = self.scores(e, table)
        codes = jnp.argmax(sim, axis=-1).astype(jnp.int32)
        q = table[codes]
        losses = {"commitment": masked_mse(e, jax.lax.stop_gradient(q), w)}
        if not self.ema:
            losses["codebook"] = masked_mse(jax.lax.stop_gradient(e), q, w)
        counts = code_histogram(codes, w, self.codebook_size)
        if self.ema and not self.use_running_average:
            self._ema_update(e, codes, w, counts, key)
        out = self.out_proj(straight_through(e, q).astype(z.dtype))
        logits = sim * jnp.exp(self.log_scale[...])
        return QuantizerOutput(quantized=out, codes=codes[..., None], losses=losses,
                               metrics=usage_metrics(counts), logits=logits)

    def _ema_update(self, e: jax.Array, codes: jax.Array, w: jax.Array, counts: jax.Array,
                    key: jax.Array | None) -> None:
        e = jax.lax.stop_gradient(e)
        onehot_sum = jnp.zeros_like(self.embed_sum[...]).at[codes.reshape(-1)].add(
            e.reshape(-1, e.shape[-1]) * w.reshape(-1, 1))
        size = self.decay * self.cluster_size[...] + (1 - self.decay) * counts
        embed = self.decay * self.embed_sum[...] + (1 - self.decay) * onehot_sum
        if self.dead_code_threshold > 0 and key is not None:
            # Reset dead codes to random valid inputs of this batch (count 1, so the
            # code's vector is exactly that input).
            flat = e.reshape(-1, e.shape[-1])
            logw = jnp.log(jnp.maximum(w.reshape(-1), 1e-30))
            picks = jax.random.categorical(key, logw, shape=(self.codebook_size,))
            dead = (size < self.dead_code_threshold) & (jnp.sum(w) > 0)
            embed = jnp.where(dead[:, None], flat[picks], embed)
            size = jnp.where(dead, 1.0, size)
        self.cluster_size[...] = size
        self.embed_sum[...] = embed

