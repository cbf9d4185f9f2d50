"""The UNet denoiser of latent diffusion: DDPM's layout (Ho et al. 2020) as ADM refined it
(Dhariwal & Nichol 2021, ``guided_diffusion.unet.UNetModel``), channels last.

    t [B] in [0, 1] -> sinusoidal features of 1000 t [B, C] -> Linear, SiLU, Linear -> emb
    emb += class_table[class] (+ Linear(vector))                       [B, 4C]
    x [B, H, W, in] -> Conv 3x3 to C                                    (skip 0)
      down, per level i: num_res_blocks x Block(width_i), then a
            stride-2 Conv 3x3 (not after the last level)                (one skip each)
      middle: ResBlock, self-attention, ResBlock
      up, per level, deepest first: (num_res_blocks + 1) x Block on
            [h; skip] (the skips concatenated, popped last-in first-out),
            then nearest 2x + Conv 3x3 (not after the first level)
    -> GroupNorm, SiLU, Conv 3x3 to in (zero-initialised)              [B, H, W, in] f32

``Block`` is a ``ResBlock`` followed, at the levels of ``attention_levels``, by an
``AttnBlock``. ``ResBlock(x, emb)``: GroupNorm, SiLU, Conv 3x3, plus a per-channel bias
``Linear(SiLU(emb))``, then GroupNorm, SiLU, Conv 3x3 (zero-initialised), plus the input
(through a 1x1 conv when the width changes). The zero-initialised convolutions (each
ResBlock's second, the attention's output projection, the last) make every block start as
its skip path and the network's output exactly 0, ADM's ``zero_module``: the first steps
train a well-conditioned identity-like stack rather than a random deep function.

Downsampling pads one pixel on every side before its stride-2 3x3 conv, as ADM's
``Downsample`` (``padding=1``): windows centred on the even pixels, so ADM's PyTorch
weights would import without a half-pixel shift. (The image VAE pads bottom-right only, as
latent diffusion's autoencoder does.)

Conditioning, for classifier-free guidance (the conventions of ``conditioning.py``, shared
with the DiT): ``cond`` is None or a dict with ``"class"`` (int ``[B]``, needs
``num_classes``) and/or ``"vector"`` (``[B, cond_dim]``: a speaker or caption embedding). A
missing entry, or ``cond=None``, is the null condition: the learned class row
``num_classes`` (also reached by ``NULL_CLASS = -1``, what ``drop_condition`` writes; any
other id outside ``[0, num_classes]`` gives NaN) and the zero vector (the vector projection
has no bias, so it adds exactly nothing).

No dropout: latent diffusion's UNet configs keep openaimodel's default of 0 (ADM used 0.1
on ImageNet 64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.attention import Attention
from common.nn.conv import Conv, upsample_nearest
from common.nn.linear import Embed, Linear
from common.nn.norms import GroupNorm
from worldmodel.diffusion.conditioning import (
    NULL_CLASS,
    Cond,
    check_condition,
    class_rows,
    timestep_embedding,
)
from worldmodel.diffusion.unet_config import UNetConfig

_zeros = nnx.initializers.zeros_init()


class ResBlock(nnx.Module):
    """``x [B, H, W, cin], emb [B, emb_dim] -> [B, H, W, cout]``; starts as its skip path."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        self.norm1 = GroupNorm(cin, cfg.groups, **kw)
        self.conv1 = Conv(cin, cout, (3, 3), **kw)
        self.emb_proj = Linear(cfg.emb_dim, cout, axes=(ax.EMBED, ax.CONV_OUT), use_bias=True,
                               **kw)
        self.norm2 = GroupNorm(cout, cfg.groups, **kw)
        self.conv2 = Conv(cout, cout, (3, 3), kernel_init=_zeros, **kw)
        self.skip = Conv(cin, cout, (1, 1), **kw) if cin != cout else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.emb_proj(jax.nn.silu(emb))[:, None, None, :].astype(h.dtype)
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class AttnBlock(nnx.Module):
    """GroupNorm -> multi-head self-attention over the ``H * W`` positions -> residual.

    ``[B, H, W, dim] -> [B, H, W, dim]``. The output projection starts at zero (ADM), so the
    block starts as the identity.
    """

    def __init__(self, dim: int, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.norm = GroupNorm(dim, cfg.groups, dtype=cfg.dtype, rngs=rngs)
        self.attn = Attention(dim, cfg.num_heads, use_bias=True, dtype=cfg.dtype, rngs=rngs)
        out = self.attn.o_proj.kernel
        out[...] = jnp.zeros_like(out[...])

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c)).reshape(b, h, w, c)
        return x + y


class Block(nnx.Module):
    """A ResBlock, then self-attention where ``attention`` (ADM's ``TimestepEmbedSequential``)."""

    def __init__(self, cin: int, cout: int, attention: bool, cfg: UNetConfig, *,
                 rngs: nnx.Rngs):
        self.res = ResBlock(cin, cout, cfg, rngs=rngs)
        self.attn = AttnBlock(cout, cfg, rngs=rngs) if attention else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class Downsample(nnx.Module):
    """``[B, H, W, dim] -> [B, H/2, W/2, dim]``: pad 1 on every side, stride-2 Conv 3x3."""

    def __init__(self, dim: int, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.conv = Conv(dim, dim, (3, 3), stride=(2, 2), padding="valid", dtype=cfg.dtype,
                         rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))


class Upsample(nnx.Module):
    """``[B, H, W, dim] -> [B, 2H, 2W, dim]``: nearest 2x, then Conv 3x3."""

    def __init__(self, dim: int, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.conv = Conv(dim, dim, (3, 3), dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(upsample_nearest(x))


class UNet(nnx.Module):
    """The denoiser ``model_fn(x_t, t, cond) -> prediction`` of ``samplers.py``.

    ``x [B, H, W, in_channels]`` (H, W multiples of ``cfg.side_multiple``), ``t [B]``
    float in [0, 1] (or a scalar, broadcast), ``cond`` None or a dict (module docstring)
    -> ``[B, H, W, in_channels]`` float32, exactly 0 at initialisation.
    """

    def __init__(self, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        c, e = cfg.channels, cfg.emb_dim
        self.time_in = Linear(c, e, axes=(ax.EMBED, ax.MLP), use_bias=True, **kw)
        self.time_out = Linear(e, e, axes=(ax.MLP, ax.EMBED), use_bias=True, **kw)
        self.class_embed = Embed(cfg.num_classes + 1, e, **kw) if cfg.num_classes else None
        self.vector_proj = (Linear(cfg.cond_dim, e, axes=(ax.COND, ax.EMBED), **kw)
                            if cfg.cond_dim else None)
        self.conv_in = Conv(cfg.in_channels, c, (3, 3), **kw)

        widths, attends = cfg.widths, set(cfg.attention_levels)
        skips, ch = [c], c  # widths of the activations the way up concatenates
        down, downsamples = [], []
        for i, w in enumerate(widths):
            level = []
            for _ in range(cfg.num_res_blocks):
                level.append(Block(ch, w, i in attends, cfg, rngs=rngs))
                ch = w
                skips.append(ch)
            down.append(nnx.List(level))
            if i < len(widths) - 1:
                downsamples.append(Downsample(ch, cfg, rngs=rngs))
                skips.append(ch)
        self.down, self.downsamples = nnx.List(down), nnx.List(downsamples)

        self.middle = Block(ch, ch, True, cfg, rngs=rngs)
        self.middle_res = ResBlock(ch, ch, cfg, rngs=rngs)

        up, upsamples = [], []
        for i in reversed(range(len(widths))):
            level = []
            for _ in range(cfg.num_res_blocks + 1):
                level.append(Block(ch + skips.pop(), widths[i], i in attends, cfg, rngs=rngs))
                ch = widths[i]
            up.append(nnx.List(level))
            if i > 0:
                upsamples.append(Upsample(ch, cfg, rngs=rngs))
        self.up, self.upsamples = nnx.List(up), nnx.List(upsamples)

        self.norm_out = GroupNorm(ch, cfg.groups, **kw)
        self.conv_out = Conv(ch, cfg.in_channels, (3, 3), kernel_init=_zeros, **kw)

    def embed(self, t: jax.Array, cond: Cond, batch: int) -> jax.Array:
        """The time + condition embedding ``[batch, 4 * channels]`` every ResBlock reads:
        ``t`` ``[batch]`` (or a scalar), ``cond`` as ``__call__``'s."""
        cfg = self.cfg
        cond = check_condition(cond, cfg.num_classes, cfg.cond_dim, "UNet")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        emb = self.time_out(jax.nn.silu(self.time_in(timestep_embedding(t, cfg.channels))))
        if self.class_embed is not None:
            ids = jnp.asarray(cond.get("class", NULL_CLASS))
            if ids.shape not in ((), (batch,)):
                raise ValueError(f"UNet: cond['class'] must be [B={batch}] (or a scalar), "
                                 f"got {ids.shape}")
            ids = jnp.broadcast_to(class_rows(ids, cfg.num_classes), (batch,))
            emb = emb + self.class_embed(ids).astype(emb.dtype)
        if self.vector_proj is not None:
            vec = jnp.asarray(cond.get("vector", jnp.zeros((batch, cfg.cond_dim), jnp.float32)))
            if vec.shape != (batch, cfg.cond_dim):
                raise ValueError(f"UNet: cond['vector'] must be [B={batch}, cond_dim="
                                 f"{cfg.cond_dim}], got {vec.shape}")
            emb = emb + self.vector_proj(vec.astype(emb.dtype))
        return emb

    def __call__(self, x: jax.Array, t: jax.Array, cond: Cond = None) -> jax.Array:
        cfg = self.cfg
        if x.ndim != 4:
            raise ValueError(f"UNet expects x [B, H, W, {cfg.in_channels}], got {x.shape}")
        b, height, width, _ = x.shape
        m = cfg.side_multiple
        if height % m or width % m:
            raise ValueError(f"UNet: height and width must be multiples of {m} (2 ** (levels "
                             f"- 1) for channel_mult={cfg.channel_mult}), got {height}x{width}")
        emb = self.embed(t, cond, b)

        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
                skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
                skips.append(h)
        h = self.middle_res(self.middle(h, emb), emb)
        for i, level in enumerate(self.up):
            for block in level:
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), emb)
            if i < len(self.upsamples):
                h = self.upsamples[i](h)
        return self.conv_out(jax.nn.silu(self.norm_out(h))).astype(jnp.float32)
