"""The content encoder: log-mel frames to frame-level content features and CTC phoneme
logits (SIVE's encoder, and the CTC phoneme recogniser that scores intelligibility).

    mel [B, T, F] -> Conv2d 3x3 /2 -> ReLU -> Conv2d 3x3 /2 -> ReLU   (4x in time and
    frequency) -> flatten (F/4 x C) -> Linear(dim) -> Conformer x layers -> features
    features -> Linear(vocab x ctc_upsample) -> CTC logits [B, T/4 x up, vocab]

Masks: a frame of a stride-2 "same" conv is valid when the input frame at its centre is
(``valid[:, ::2]``); padding frames are zeroed after every layer. A left-padded row
equals its unpadded self when the padding is a multiple of 4 frames (the frame grid
lines up; the data pipeline pads to a multiple of ``4 x hop`` samples).

Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]`` -> ``ContentOutput``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.conformer import ConformerBlock
from common.nn.conv import Conv
from common.nn.linear import Linear
from common.speech.config import ContentEncoderConfig

SUBSAMPLING = 4


@dataclasses.dataclass(frozen=True)
class ContentOutput:
    """features ``[B, T4, dim]`` and their ``valid [B, T4]``; CTC ``logits
    [B, T4 * ctc_upsample, vocab]`` and ``logit_valid`` (None without a CTC head)."""

    features: jax.Array
    valid: jax.Array
    logits: jax.Array | None
    logit_valid: jax.Array | None


def subsampled_valid(valid: jax.Array) -> jax.Array:
    """``[B, T] -> [B, ceil(ceil(T/2)/2)]``: the front end's valid frames."""
    return valid[:, ::2][:, ::2]


class ContentEncoder(nnx.Module):
    """See the module docstring."""

    def __init__(self, cfg: ContentEncoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c = cfg.subsample_channels
        self.conv1 = Conv(1, c, (3, 3), stride=(2, 2), rngs=rngs)
        self.conv2 = Conv(c, c, (3, 3), stride=(2, 2), rngs=rngs)
        freq = math.ceil(math.ceil(cfg.n_mels / 2) / 2)  # the front end's output bands
        self.project = Linear(freq * c, cfg.dim, axes=(ax.MLP, ax.EMBED), use_bias=True,
                              rngs=rngs)
        self.blocks = nnx.List([
            ConformerBlock(cfg.dim, cfg.heads, ffn_mult=cfg.ffn_mult,
                           conv_kernel=cfg.conv_kernel, rngs=rngs)
            for _ in range(cfg.layers)])
        self.ctc = (Linear(cfg.dim, cfg.vocab * cfg.ctc_upsample, axes=(ax.EMBED, ax.VOCAB),
                           use_bias=True, rngs=rngs) if cfg.vocab else None)

    def __call__(self, mel: jax.Array, valid: jax.Array) -> ContentOutput:
        cfg = self.cfg
        if mel.shape[-1] != cfg.n_mels or valid.shape != mel.shape[:2]:
            raise ValueError(f"ContentEncoder expects mel [B, T, {cfg.n_mels}] and valid "
                             f"[B, T], got {mel.shape} and {valid.shape}")
        x = jnp.where(valid[..., None], mel.astype(jnp.float32), 0.0)[..., None]
        v2 = valid[:, ::2]
        x = jnp.where(v2[:, :, None, None], jax.nn.relu(self.conv1(x)), 0.0)
        v4 = v2[:, ::2]
        x = jnp.where(v4[:, :, None, None], jax.nn.relu(self.conv2(x)), 0.0)
        b, t = x.shape[:2]
        h = jnp.where(v4[..., None], self.project(x.reshape(b, t, -1)), 0.0)
        for block in self.blocks:
            h = block(h, v4)
        if self.ctc is None:
            return ContentOutput(h, v4, None, None)
        up = cfg.ctc_upsample
        logits = self.ctc(h).reshape(b, t * up, cfg.vocab)
        return ContentOutput(h, v4, logits, jnp.repeat(v4, up, axis=1))
