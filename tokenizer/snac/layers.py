"""SNAC's encoder and decoder (DAC-style, channels last): weight-normalised convs, Snake,
depthwise residual units, local windowed attention with RoPE and learned noise.

Padding follows the PyTorch package exactly so that converted weights give the same
numbers: the strided conv (kernel ``2s``, stride ``s``) pads ``ceil(s / 2)`` zeros on both
sides and the transposed conv (kernel ``2s``) trims ``ceil(s / 2)`` samples on the left
and ``ceil(s / 2) - s % 2`` on the right (``output_padding = s % 2``), so odd strides
(the 32/44 kHz models' 3) map ``T`` frames to exactly ``T / s`` and ``T * s``.
Sequence lengths must be multiples of the strides (``SNAC`` pads its input for that).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.activations import Snake
from common.nn.attention import dot_product_attention
from common.nn.conv import Conv, ConvTranspose
from common.nn.linear import Linear
from common.nn.norms import LayerNorm
from common.nn.positional import RoPEConfig, apply_rope
from tokenizer.codec.residual import TORCH_KERNEL_INIT, ResidualUnit

DILATIONS = (1, 3, 9)
HEAD_DIM = 64
KERNEL_INIT = TORCH_KERNEL_INIT  # PyTorch's default, as the package trains from


def wn_conv(cin: int, cout: int, k: int, *, rngs: nnx.Rngs, **kw) -> Conv:
    """A weight-normalised conv; "same" (centred) padding unless told otherwise."""
    return Conv(cin, cout, k, weight_norm=True, kernel_init=KERNEL_INIT, rngs=rngs, **kw)


class DownConv(nnx.Module):
    """Strided conv, kernel ``2s``, PyTorch's symmetric padding ``ceil(s/2)``:
    ``[B, T, cin] -> [B, T / s, cout]``."""

    def __init__(self, cin: int, cout: int, stride: int, *, dtype=None, rngs: nnx.Rngs):
        self.pad = math.ceil(stride / 2)
        self.conv = wn_conv(cin, cout, 2 * stride, stride=stride, padding="valid",
                            dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.pad(x, ((0, 0), (self.pad, self.pad), (0, 0))))


class UpConv(nnx.Module):
    """Transposed conv, kernel ``2s``, trimmed as PyTorch's ``padding=ceil(s/2),
    output_padding=s % 2``: ``[B, T, cin] -> [B, T * s, cout]``."""

    def __init__(self, cin: int, cout: int, stride: int, *, dtype=None, rngs: nnx.Rngs):
        self.stride, self.trim = stride, math.ceil(stride / 2)
        self.conv = ConvTranspose(cin, cout, 2 * stride, stride=stride, padding="valid",
                                  weight_norm=True, kernel_init=KERNEL_INIT, dtype=dtype,
                                  rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n = x.shape[1] * self.stride
        return self.conv(x)[:, self.trim:self.trim + n]


class EncoderBlock(nnx.Module):
    """Three residual units at ``cin`` channels, Snake, a strided conv to ``2 * cin``:
    ``[B, T, cin] -> [B, T / stride, 2 * cin]``."""

    def __init__(self, cin: int, stride: int, *, depthwise: bool, dtype=None,
                 rngs: nnx.Rngs):
        groups = cin if depthwise else 1
        self.units = nnx.List([ResidualUnit(cin, d, groups=groups, kernel_init=KERNEL_INIT,
                                            dtype=dtype, rngs=rngs)
                               for d in DILATIONS])
        self.act = Snake(cin, dtype=dtype, rngs=rngs)
        self.down = DownConv(cin, 2 * cin, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for unit in self.units:
            x = unit(x)
        return self.down(self.act(x))


class NoiseBlock(nnx.Module):
    """``x + n * W x`` with ``n ~ N(0, 1)`` of shape ``[B, T, 1]`` (one draw per time step,
    shared by all channels) and ``W`` a weight-normed 1x1 conv without bias.
    ``key=None`` adds nothing (deterministic decoding)."""

    def __init__(self, dim: int, *, dtype=None, rngs: nnx.Rngs):
        self.linear = wn_conv(dim, dim, 1, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if key is None:
            return x
        return x + self.draw(key, (*x.shape[:2], 1)).astype(x.dtype) * self.linear(x)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """The noise ``[B, T, 1]`` float32 (a method, so a parity test can feed the
        PyTorch package's own draws)."""
        return jax.random.normal(key, shape, jnp.float32)


class DecoderBlock(nnx.Module):
    """Snake, a transposed conv from ``cin`` to ``cout``, optional noise, three residual
    units: ``[B, T, cin] -> [B, T * stride, cout]``."""

    def __init__(self, cin: int, cout: int, stride: int, *, noise: bool, depthwise: bool,
                 dtype=None, rngs: nnx.Rngs):
        self.act = Snake(cin, dtype=dtype, rngs=rngs)
        self.up = UpConv(cin, cout, stride, dtype=dtype, rngs=rngs)
        self.noise = NoiseBlock(cout, dtype=dtype, rngs=rngs) if noise else None
        groups = cout if depthwise else 1
        self.units = nnx.List([ResidualUnit(cout, d, groups=groups, kernel_init=KERNEL_INIT,
                                            dtype=dtype, rngs=rngs)
                               for d in DILATIONS])

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        x = self.up(self.act(x))
        if self.noise is not None:
            x = self.noise(x, key)
        for unit in self.units:
            x = unit(x)
        return x


class LocalMHA(nnx.Module):
    """Pre-norm self-attention inside non-overlapping windows of ``window`` frames, with
    RoPE over each window's positions ``0..window-1`` and a residual:
    ``[B, T, dim] -> [B, T, dim]``, T a multiple of ``window``. Heads of 64 dims."""

    def __init__(self, dim: int, window: int, *, dtype=None, rngs: nnx.Rngs):
        if dim % HEAD_DIM:
            raise ValueError(f"LocalMHA: dim {dim} is not a multiple of {HEAD_DIM}")
        self.window, self.heads, self.dtype = window, dim // HEAD_DIM, dtype
        self.norm = LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.qkv = Linear(dim, 3 * dim, axes=(ax.EMBED, ax.MLP), dtype=dtype, rngs=rngs)
        self.out = Linear(dim, dim, axes=(ax.MLP, ax.EMBED), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, c = x.shape
        if t % self.window:
            raise ValueError(f"LocalMHA: {t} frames is not a multiple of the window "
                             f"{self.window}")
        w = t // self.window
        q, k, v = jnp.split(self.qkv(self.norm(x)), 3, axis=-1)
        q, k, v = (y.reshape(b * w, self.window, self.heads, HEAD_DIM) for y in (q, k, v))
        pos = jnp.arange(self.window)
        q, k = apply_rope(q, pos, RoPEConfig()), apply_rope(k, pos, RoPEConfig())
        o = dot_product_attention(q, k, v, scale=HEAD_DIM ** -0.5)
        return x + self.out(o.reshape(b, t, c))


class Encoder(nnx.Module):
    """``wav [B, N, 1] -> latent [B, N / hop, dim]``: a conv to ``encoder_dim``, one block
    per stride (each doubling the channels), local attention, a (depthwise) conv."""

    def __init__(self, d_model: int, strides, *, depthwise: bool, window: int | None,
                 dtype=None, rngs: nnx.Rngs):
        self.conv_in = wn_conv(1, d_model, 7, dtype=dtype, rngs=rngs)
        blocks = []
        for s in strides:
            blocks.append(EncoderBlock(d_model, s, depthwise=depthwise, dtype=dtype,
                                       rngs=rngs))
            d_model *= 2
        self.blocks = nnx.List(blocks)
        self.attn = (LocalMHA(d_model, window, dtype=dtype, rngs=rngs)
                     if window is not None else None)
        self.conv_out = wn_conv(d_model, d_model, 7, groups=d_model if depthwise else 1,
                                dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        if self.attn is not None:
            x = self.attn(x)
        return self.conv_out(x)


class Decoder(nnx.Module):
    """``latent [B, T, dim] -> wav [B, T * hop, 1]`` in (-1, 1): input convs to
    ``channels``, local attention, one block per rate (each halving the channels), Snake,
    a conv to one channel, tanh. ``key`` drives the noise blocks (None: no noise)."""

    def __init__(self, dim: int, channels: int, rates, *, noise: bool, depthwise: bool,
                 window: int | None, dtype=None, rngs: nnx.Rngs):
        if depthwise:
            self.conv_in = nnx.List([wn_conv(dim, dim, 7, groups=dim, dtype=dtype, rngs=rngs),
                                     wn_conv(dim, channels, 1, dtype=dtype, rngs=rngs)])
        else:
            self.conv_in = nnx.List([wn_conv(dim, channels, 7, dtype=dtype, rngs=rngs)])
        self.attn = (LocalMHA(channels, window, dtype=dtype, rngs=rngs)
                     if window is not None else None)
        self.blocks = nnx.List([
            DecoderBlock(channels // 2 ** i, channels // 2 ** (i + 1), s, noise=noise,
                         depthwise=depthwise, dtype=dtype, rngs=rngs)
            for i, s in enumerate(rates)])
        out = channels // 2 ** len(rates)
        self.act = Snake(out, dtype=dtype, rngs=rngs)
        self.conv_out = wn_conv(out, 1, 7, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        for conv in self.conv_in:
            x = conv(x)
        if self.attn is not None:
            x = self.attn(x)
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key,
                                                                             len(self.blocks))
        for block, k in zip(self.blocks, keys, strict=True):
            x = block(x, k)
        return jnp.tanh(self.conv_out(self.act(x)))
