"""ECAPA-TDNN speaker encoder (Desplanques et al. 2020), as SpeechBrain builds it.

Log-mel frames in, one speaker embedding out::

    TDNN(k=5) -> 3 x SE-Res2Net block (k=3, dilations 2, 3, 4) -> concat of the three
    (multi-layer feature aggregation) -> TDNN(k=1) -> attentive statistics pooling
    -> BatchNorm -> 1x1 conv to ``embed_dim``

A TDNN block is conv -> ReLU -> BatchNorm (SpeechBrain's order). An SE-Res2Net block is
TDNN(1x1) -> Res2Net (``res2net_scale`` channel groups, each group's dilated conv also
sees the previous group's output) -> TDNN(1x1) -> squeeze-excitation (masked mean over
time) -> + shortcut. ``EcapaConfig.base()`` is SpeechBrain's ``ECAPA_TDNN`` defaults
(channels 1024 x 4 and 3072, attention 128, SE 128, scale 8, 192-d embedding).

Masks: batches may be left- or right-padded; every layer zeroes padding frames, batch
norm and pooling use valid frames only, so padding content never reaches an embedding.
One difference from SpeechBrain: its convs pad "same" by reflection, these by zeros
(reflection across a padded batch's boundary would read padding).

Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]`` -> ``[B, embed_dim]`` (float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.conv import Conv
from common.nn.norms import batch_norm
from common.speech.config import EcapaConfig
from common.speech.pooling import AttentiveStatsPool, uniform_weights


def _masked(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask, x, 0.0)


class TdnnBlock(nnx.Module):
    """conv -> ReLU -> BatchNorm. Shapes: ``[B, T, in] -> [B, T, out]``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int = 1, *,
                 rngs: nnx.Rngs):
        self.conv = Conv(in_ch, out_ch, kernel_size, dilation=dilation, rngs=rngs)
        self.norm = batch_norm(out_ch, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        return _masked(self.norm(jax.nn.relu(self.conv(x)), mask=mask), mask)


class Res2Net(nnx.Module):
    """Res2Net's hierarchical residual convolution over ``scale`` channel groups: group 0
    passes through, group 1 is convolved, group i >= 2 is convolved after adding group
    i-1's output. Shapes: ``[B, T, C] -> [B, T, C]``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, *,
                 rngs: nnx.Rngs):
        self.scale = scale
        width = channels // scale
        self.blocks = nnx.List([TdnnBlock(width, width, kernel_size, dilation, rngs=rngs)
                                for _ in range(scale - 1)])

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        parts = jnp.split(x, self.scale, axis=-1)
        out, y = [parts[0]], None
        for i, block in enumerate(self.blocks, start=1):
            y = block(parts[i] if y is None else parts[i] + y, mask)
            out.append(y)
        return jnp.concatenate(out, axis=-1)


class SqueezeExcite(nnx.Module):
    """Channel gates from the masked time average. Shapes: ``[B, T, C] -> [B, T, C]``."""

    def __init__(self, channels: int, bottleneck: int, *, rngs: nnx.Rngs):
        self.down = Conv(channels, bottleneck, 1, rngs=rngs)
        self.up = Conv(bottleneck, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        s = jnp.sum(x * uniform_weights(valid), axis=1, keepdims=True)  # [B, 1, C]
        return x * jax.nn.sigmoid(self.up(jax.nn.relu(self.down(s))))


class SeRes2NetBlock(nnx.Module):
    """TDNN(1x1) -> Res2Net -> TDNN(1x1) -> SE, plus the shortcut (a 1x1 conv when the
    width changes). Shapes: ``[B, T, in] -> [B, T, out]``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int,
                 scale: int, se_channels: int, *, rngs: nnx.Rngs):
        self.tdnn1 = TdnnBlock(in_ch, out_ch, 1, rngs=rngs)
        self.res2net = Res2Net(out_ch, kernel_size, dilation, scale, rngs=rngs)
        self.tdnn2 = TdnnBlock(out_ch, out_ch, 1, rngs=rngs)
        self.se = SqueezeExcite(out_ch, se_channels, rngs=rngs)
        self.shortcut = Conv(in_ch, out_ch, 1, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        mask = valid[..., None]
        residual = x if self.shortcut is None else self.shortcut(x)
        h = self.tdnn2(self.res2net(self.tdnn1(x, mask), mask), mask)
        return _masked(self.se(h, valid) + residual, mask)


class EcapaTdnn(nnx.Module):
    """The speaker encoder; see the module docstring.

    Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]`` bool -> ``[B, embed_dim]`` float32.
    """

    def __init__(self, cfg: EcapaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        ch, ks, dl = cfg.channels, cfg.kernel_sizes, cfg.dilations
        self.stem = TdnnBlock(cfg.n_mels, ch[0], ks[0], dl[0], rngs=rngs)
        self.blocks = nnx.List([
            SeRes2NetBlock(ch[i - 1], ch[i], ks[i], dl[i], cfg.res2net_scale,
                           cfg.se_channels, rngs=rngs)
            for i in range(1, len(ch) - 1)])
        self.aggregate = TdnnBlock(sum(ch[1:-1]), ch[-1], ks[-1], dl[-1], rngs=rngs)
        self.pool = AttentiveStatsPool(ch[-1], cfg.attention_channels,
                                       global_context=cfg.global_context, rngs=rngs)
        self.pool_norm = batch_norm(2 * ch[-1], rngs=rngs)
        self.project = Conv(2 * ch[-1], cfg.embed_dim, 1, rngs=rngs)

    def __call__(self, mel: jax.Array, valid: jax.Array) -> jax.Array:
        if mel.shape[-1] != self.cfg.n_mels or valid.shape != mel.shape[:2]:
            raise ValueError(f"EcapaTdnn expects mel [B, T, {self.cfg.n_mels}] and valid "
                             f"[B, T], got {mel.shape} and {valid.shape}")
        mask = valid[..., None]
        x = self.stem(_masked(mel.astype(jnp.float32), mask), mask)
        outs = []
        for block in self.blocks:
            x = block(x, valid)
            outs.append(x)
        x = self.aggregate(jnp.concatenate(outs, axis=-1), mask)
        pooled = self.pool(x, valid)  # [B, 2C]
        pooled = self.pool_norm(pooled[:, None, :])
        return self.project(pooled)[:, 0, :]


__all__ = ["EcapaConfig", "EcapaTdnn", "SeRes2NetBlock", "TdnnBlock"]
