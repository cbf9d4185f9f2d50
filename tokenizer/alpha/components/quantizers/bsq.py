"""Binary Spherical Quantization (Zhao, Xiong and Krähenbühl 2024).

``z [B, T, D]`` is projected to ``L`` dimensions and l2-normalised to ``u`` on the unit
sphere; each coordinate is quantised to its sign scaled by ``1/sqrt(L)``, so the code
``q = sign(u) / sqrt(L)`` is also a unit vector and ``|u - q|`` is bounded. The implicit
codebook has ``2^L`` entries and needs no lookup; the gradient passes straight through.

Codebook use is encouraged by the entropy penalty
``(E[H(p(c|u))] - gamma * H(E[p(c|u)])) / tau`` on the soft assignment
``p(c|u) = softmax_c(-tau * ||u - c||^2) = softmax_c(2 tau c·u)`` over the codes
``c in {-1/sqrt(L), +1/sqrt(L)}^L``. This is the BSQ-ViT reference code's
(``transcoder/models/quantizer/bsq.py``, ``l2_norm``/``post_q_l2_norm`` on: logits
``-distance * inv_temperature`` with ``distance = -2 z·c``, and the penalty divided by
``inv_temperature``), so ``tau`` here is its ``inv_temperature`` (default 1, as there)
and ``gamma`` its ``gamma`` (with ``gamma0 = 1``; the loss weight ``LossConfig.entropy``
is its ``zeta``). Per coordinate ``p(+|u_d) = sigmoid(4 tau u_d / sqrt(L))`` (the
reference's "analytical" form): since ``|u_d|`` is about ``1 / sqrt(L)``, the
assignment gets softer as ``L`` grows at a fixed ``tau``. (Before this matched the
reference, ``tau`` scaled logits ``2 tau sqrt(L) u_d``, i.e. the reference's
``inv_temperature = tau * L / 2``.) The per-sample term factorises over coordinates
exactly (the reference's "group" and "analytical" per-sample entropies agree). The
codebook term does not; as in the reference it is computed over ``L / group_size``
independent groups of coordinates, each with its own ``2^group_size`` codes, and summed.

Codes are the integers whose bits are the signs (most significant bit = first
coordinate), so ``L <= 30`` fits int32.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
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
from tokenizer.alpha.components.quantizers.vq import unit_norm


def _entropy(p: jax.Array, axis: int = -1) -> jax.Array:
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=axis)


def bits_to_codes(bits: jax.Array) -> jax.Array:
    """int32 ``[..., L]`` of 0/1 -> int32 ``[...]`` (first bit most significant)."""
    weights = 2 ** jnp.arange(bits.shape[-1] - 1, -1, -1, dtype=jnp.int32)
    return jnp.sum(bits.astype(jnp.int32) * weights, axis=-1)


def codes_to_bits(codes: jax.Array, num_bits: int) -> jax.Array:
    """Inverse of ``bits_to_codes``: int ``[...]`` -> int32 ``[..., num_bits]``."""
    shifts = jnp.arange(num_bits - 1, -1, -1, dtype=jnp.int32)
    return (codes[..., None].astype(jnp.int32) >> shifts) & 1


class BinarySphericalQuantizer(nnx.Module):
    """Shapes: ``z [B, T, D]``, valid ``[B, T]`` -> ``QuantizerOutput`` with codes
    ``[B, T, 1]`` in ``[0, 2^L)`` and losses ``commitment``, ``entropy`` (the penalty
    above, ``inv_temperature`` = the reference's), metrics ``bsq_sample_entropy``,
    ``bsq_codebook_entropy`` (nats), and the usage/perplexity of each group's codes
    averaged over groups."""

    def __init__(self, dim: int, num_bits: int = 16, *, group_size: int = 8,
                 gamma: float = 1.0, inv_temperature: float = 1.0, rngs: nnx.Rngs):
        if inv_temperature <= 0:
            raise ValueError(f"BSQ inv_temperature must be > 0, got {inv_temperature}")
        if not 1 <= num_bits <= 30:
            raise ValueError(f"BSQ num_bits must be in [1, 30] (int32 codes), got {num_bits}")
        if num_bits % group_size:
            raise ValueError(f"BSQ group_size {group_size} must divide num_bits {num_bits}")
        self.dim, self.num_bits, self.group_size = dim, num_bits, group_size
        self.gamma, self.inv_temperature = gamma, inv_temperature
        self.in_proj = Linear(dim, num_bits, axes=(ax.EMBED, None), use_bias=True, rngs=rngs)
        self.out_proj = Linear(num_bits, dim, axes=(None, ax.EMBED), use_bias=True, rngs=rngs)
        # Every sign pattern of one group, [2^g, g] in {0, 1}.
        self._patterns = np.array(list(itertools.product((0, 1), repeat=group_size)),
                                  np.float32)

    @property
    def codebook_size(self) -> int:
        return 2**self.num_bits

    def quantize(self, u: jax.Array) -> jax.Array:
        """Unit ``u [..., L]`` -> ``sign(u) / sqrt(L)`` (0 maps to +)."""
        return jnp.where(u >= 0, 1.0, -1.0) / math.sqrt(self.num_bits)

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """int ``[B, T]`` -> ``[B, T, D]``."""
        bits = codes_to_bits(codes, self.num_bits).astype(jnp.float32)
        return self.out_proj((2 * bits - 1) / math.sqrt(self.num_bits))

    def entropies(self, u: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mean per-sample entropy, summed group codebook entropy), nats, over valid
        frames of unit ``u [B, T, L]``."""
        # log p(+) - log p(-) for one coordinate: 2 tau (c+ - c-) u_d, c± = ±1/sqrt(L).
        logit = 4 * self.inv_temperature / math.sqrt(self.num_bits) * u
        log_p, log_q = jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit)
        p = jnp.exp(log_p)
        per_dim = -(p * log_p + (1 - p) * log_q)  # binary entropy per coordinate
        total_w = jnp.maximum(jnp.sum(w), 1.0)
        sample = jnp.sum(jnp.sum(per_dim, -1) * w) / total_w
        groups = self.num_bits // self.group_size
        pat = jnp.asarray(self._patterns)
        lp = log_p.reshape(*u.shape[:-1], groups, self.group_size)
        lq = log_q.reshape(*u.shape[:-1], groups, self.group_size)
        # log p(pattern) = sum over the group's coordinates: [B, T, G, 2^g].
        log_pattern = jnp.einsum("btgd,cd->btgc", lp, pat) + jnp.einsum(
            "btgd,cd->btgc", lq, 1 - pat)
        avg = jnp.einsum("btgc,bt->gc", jnp.exp(log_pattern), w) / total_w
        return sample, jnp.sum(_entropy(avg))

    def __call__(self, z: jax.Array, valid: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> QuantizerOutput:
        del key
        w = valid_weights(valid, z.shape)
        u = unit_norm(self.in_proj(z))
        q = self.quantize(u)
        bits = (u >= 0).astype(jnp.int32)
        sample_h, codebook_h = self.entropies(u, w)
        # Divided by tau as the reference does: the entropies' gradients grow with tau.
        losses = {"commitment": masked_mse(u, jax.lax.stop_gradient(q), w),
                  "entropy": (sample_h - self.gamma * codebook_h) / self.inv_temperature}
        groups = self.num_bits // self.group_size
        group_codes = bits_to_codes(bits.reshape(*bits.shape[:-1], groups, self.group_size))
        usage = [usage_metrics(code_histogram(group_codes[..., g], w, 2**self.group_size))
                 for g in range(groups)]
        metrics = {k: jnp.mean(jnp.stack([m[k] for m in usage])) for k in usage[0]}
        metrics = {f"group_{k}": v for k, v in metrics.items()}
        metrics.update(sample_entropy=sample_h, codebook_entropy=codebook_h)
        out = self.out_proj(straight_through(u, q).astype(z.dtype))
        return QuantizerOutput(quantized=out, codes=bits_to_codes(bits)[..., None],
                               losses=losses, metrics=metrics)
