"""Conformer block (Gulati et al. 2020), the encoder layer of speech recognisers:

    x = x + 1/2 FFN(LN(x))                      macaron half-step feed-forward
    x = x + MHSA(LN(x))                         self-attention, RoPE positions
    x = x + Conv(LN(x))                         pointwise -> GLU -> depthwise (k) ->
                                                BatchNorm -> SiLU -> pointwise
    x = x + 1/2 FFN(LN(x))
    y = LN(x)

(ESPnet / torchaudio ordering; RoPE instead of relative positional encodings, as recent
recognisers use.) Masks: ``valid [B, T]`` marks real frames of a left- or right-padded
batch; attention ignores padding keys, the convolution module zeroes padding frames
before its depthwise conv and batch norm takes its statistics over valid frames, so
padding content never reaches a valid output. Dropout is not applied (the speech models
here train without it).

Shapes: ``x [B, T, dim]``, ``valid [B, T]`` -> ``[B, T, dim]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.attention import Attention
from common.nn.conv import Conv
from common.nn.ffn import FeedForward
from common.nn.masks import positions_from_valid
from common.nn.norms import LayerNorm, batch_norm
from common.nn.positional import RoPEConfig


class ConformerConv(nnx.Module):
    """The convolution module. Shapes: ``[B, T, dim] -> [B, T, dim]``."""

    def __init__(self, dim: int, kernel_size: int = 31, *, rngs: nnx.Rngs):
        self.pointwise_in = Conv(dim, 2 * dim, 1, rngs=rngs)
        self.depthwise = Conv(dim, dim, kernel_size, groups=dim, rngs=rngs)
        self.norm = batch_norm(dim, rngs=rngs)
        self.pointwise_out = Conv(dim, dim, 1, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        mask = valid[..., None]
        h = jax.nn.glu(self.pointwise_in(x), axis=-1)
        h = self.depthwise(jnp.where(mask, h, 0.0))
        h = jax.nn.silu(self.norm(h, mask=mask))
        return jnp.where(mask, self.pointwise_out(h), 0.0)


class ConformerBlock(nnx.Module):
    """One Conformer layer; see the module docstring."""

    def __init__(self, dim: int, num_heads: int, *, ffn_mult: int = 4,
                 conv_kernel: int = 31, rope: RoPEConfig | None = None, rngs: nnx.Rngs):
        self.ffn1_norm = LayerNorm(dim, rngs=rngs)
        self.ffn1 = FeedForward(dim, ffn_mult * dim, activation="silu", gated=False,
                                use_bias=True, rngs=rngs)
        self.attn_norm = LayerNorm(dim, rngs=rngs)
        self.attn = Attention(dim, num_heads, rope=rope or RoPEConfig(), use_bias=True,
                              rngs=rngs)
        self.conv_norm = LayerNorm(dim, rngs=rngs)
        self.conv = ConformerConv(dim, conv_kernel, rngs=rngs)
        self.ffn2_norm = LayerNorm(dim, rngs=rngs)
        self.ffn2 = FeedForward(dim, ffn_mult * dim, activation="silu", gated=False,
                                use_bias=True, rngs=rngs)
        self.final_norm = LayerNorm(dim, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array,
                 positions: jax.Array | None = None) -> jax.Array:
        """``positions [B, T]``: the frames' positions for RoPE (default: counted from
        each row's first valid frame, so left padding does not shift them)."""
        if positions is None:
            positions = positions_from_valid(valid)
        x = x + 0.5 * self.ffn1(self.ffn1_norm(x))
        x = x + self.attn(self.attn_norm(x), positions=positions, valid=valid)
        x = x + self.conv(self.conv_norm(x), valid)
        x = x + 0.5 * self.ffn2(self.ffn2_norm(x))
        return jnp.where(valid[..., None], self.final_norm(x), 0.0)
