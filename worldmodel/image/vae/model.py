"""The image VAE: latent diffusion's ``AutoencoderKL`` layout (Rombach et al. 2022;
``ldm.modules.diffusionmodules.model.Encoder/Decoder``), channels last.

    encoder:  image [B, H, W, C] -> Conv 3x3
              -> per level: num_res_blocks x ResBlock, then a stride-2 Conv 3x3 (not
                 after the last level)
              -> middle: ResBlock, self-attention, ResBlock
              -> GroupNorm -> SiLU -> Conv 3x3 -> Conv 1x1 (``quant_conv``)
              -> mean, logvar [B, H/f, W/f, Z]   (logvar clamped; f = 2^(levels - 1))
    decoder:  z -> Conv 1x1 (``post_quant_conv``) -> Conv 3x3 -> middle
              -> per level, deepest first: (num_res_blocks + 1) x ResBlock, then
                 nearest 2x upsampling + Conv 3x3 (not after the first level)
              -> GroupNorm -> SiLU -> Conv 3x3 -> image [B, H, W, C]

``ResBlock``: GroupNorm -> SiLU -> Conv 3x3 -> GroupNorm -> SiLU -> Conv 3x3, plus the
input (through a 1x1 conv when the width changes). The downsampling conv pads one pixel
on the bottom and right only, as latent diffusion's ``Downsample`` does (our
``Conv(padding="same")`` for kernel 3, stride 2 on an even size). The attention is one
head over the ``H/f * W/f`` positions with biased projections, as ``AttnBlock``.

No dropout (latent diffusion trains with 0) and no time embedding (the diffusion UNet's).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.attention import Attention
from common.nn.conv import Conv, upsample_nearest
from common.nn.norms import GroupNorm
from worldmodel.image.vae.config import ImageVaeModelConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ImageVaeOutput:
    """``image [B, H, W, C]`` (the reconstruction) and the posterior's ``mean, logvar
    [B, H/f, W/f, Z]``."""

    image: jax.Array
    mean: jax.Array
    logvar: jax.Array


class ResBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, cfg: ImageVaeModelConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        self.norm1 = GroupNorm(cin, cfg.groups, eps=1e-6, **kw)
        self.conv1 = Conv(cin, cout, (3, 3), **kw)
        self.norm2 = GroupNorm(cout, cfg.groups, eps=1e-6, **kw)
        self.conv2 = Conv(cout, cout, (3, 3), **kw)
        self.skip = Conv(cin, cout, (1, 1), **kw) if cin != cout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class AttnBlock(nnx.Module):
    """GroupNorm -> one-head self-attention over every position -> residual."""

    def __init__(self, dim: int, cfg: ImageVaeModelConfig, *, rngs: nnx.Rngs):
        self.norm = GroupNorm(dim, cfg.groups, eps=1e-6, dtype=cfg.dtype, rngs=rngs)
        self.attn = Attention(dim, 1, use_bias=True, dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c)).reshape(b, h, w, c)
        return x + y


class Middle(nnx.Module):
    def __init__(self, dim: int, cfg: ImageVaeModelConfig, *, rngs: nnx.Rngs):
        self.block1 = ResBlock(dim, dim, cfg, rngs=rngs)
        self.attn = AttnBlock(dim, cfg, rngs=rngs) if cfg.attention else None
        self.block2 = ResBlock(dim, dim, cfg, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.block1(x)
        if self.attn is not None:
            x = self.attn(x)
        return self.block2(x)


class Encoder(nnx.Module):
    """``image [B, H, W, C] -> (mean, logvar) [B, H/f, W/f, Z]`` (logvar unclamped)."""

    def __init__(self, cfg: ImageVaeModelConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.conv_in = Conv(cfg.in_channels, cfg.channels, (3, 3), **kw)
        blocks, downs, cin = [], [], cfg.channels
        for i, w in enumerate(widths):
            level = []
            for _ in range(cfg.num_res_blocks):
                level.append(ResBlock(cin, w, cfg, rngs=rngs))
                cin = w
            blocks.append(nnx.List(level))
            if i < len(widths) - 1:
                downs.append(Conv(w, w, (3, 3), stride=(2, 2), **kw))
        self.blocks, self.downs = nnx.List(blocks), nnx.List(downs)
        self.middle = Middle(cin, cfg, rngs=rngs)
        self.norm_out = GroupNorm(cin, cfg.groups, eps=1e-6, **kw)
        self.conv_out = Conv(cin, 2 * cfg.latent_channels, (3, 3), **kw)
        self.quant_conv = Conv(2 * cfg.latent_channels, 2 * cfg.latent_channels, (1, 1), **kw)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.conv_in(x)
        for i, level in enumerate(self.blocks):
            for block in level:
                h = block(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        h = self.middle(h)
        h = self.quant_conv(self.conv_out(jax.nn.silu(self.norm_out(h))))
        mean, logvar = jnp.split(h.astype(jnp.float32), 2, axis=-1)
        return mean, logvar


class Decoder(nnx.Module):
    """``z [B, H/f, W/f, Z] -> image [B, H, W, C]`` (float32). ``head=False`` leaves out
    the output norm and conv: ``features`` is then the decoder (the recurrent VAE puts
    its own refinement head there)."""

    def __init__(self, cfg: ImageVaeModelConfig, *, head: bool = True, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        widths = [cfg.channels * m for m in cfg.channel_mult]
        z = cfg.latent_channels
        self.post_quant_conv = Conv(z, z, (1, 1), **kw)
        cin = widths[-1]
        self.conv_in = Conv(z, cin, (3, 3), **kw)
        self.middle = Middle(cin, cfg, rngs=rngs)
        blocks, ups = [], []
        for i in reversed(range(len(widths))):  # deepest level first
            level = []
            for _ in range(cfg.num_res_blocks + 1):
                level.append(ResBlock(cin, widths[i], cfg, rngs=rngs))
                cin = widths[i]
            blocks.append(nnx.List(level))
            if i > 0:
                ups.append(Conv(cin, cin, (3, 3), **kw))
        self.blocks, self.ups = nnx.List(blocks), nnx.List(ups)
        self.width = cin
        self.norm_out = GroupNorm(cin, cfg.groups, eps=1e-6, **kw) if head else None
        self.conv_out = Conv(cin, cfg.in_channels, (3, 3), **kw) if head else None

    def features(self, z: jax.Array) -> jax.Array:
        """``z [B, H/f, W/f, Z]`` -> the last level's activations ``[B, H, W, width]``."""
        h = self.middle(self.conv_in(self.post_quant_conv(z)))
        for i, level in enumerate(self.blocks):
            for block in level:
                h = block(h)
            if i < len(self.ups):
                h = self.ups[i](upsample_nearest(h))
        return h

    def __call__(self, z: jax.Array) -> jax.Array:
        h = self.features(z)
        return self.conv_out(jax.nn.silu(self.norm_out(h))).astype(jnp.float32)


class ImageVae(nnx.Module):
    """The autoencoder with a diagonal Gaussian posterior, and its training-call counter
    (the KL warm-up's step, checkpointed, so a resumed run continues the schedule)."""

    def __init__(self, cfg: ImageVaeModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg, rngs=rngs)
        self.decoder = Decoder(cfg, rngs=rngs)
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))

    def encode(self, image: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``image [B, H, W, C]`` in [-1, 1] -> ``(mean, logvar) [B, H/f, W/f, Z]``."""
        mean, logvar = self.encoder(image)
        return mean, jnp.clip(logvar, self.cfg.logvar_min, self.cfg.logvar_max)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def __call__(self, image: jax.Array, *, key: jax.Array | None = None) -> ImageVaeOutput:
        """Encode, sample the posterior with ``key`` (None: its mean), decode."""
        mean, logvar = self.encode(image)
        z = mean
        if key is not None:
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return ImageVaeOutput(self.decode(z), mean, logvar)
