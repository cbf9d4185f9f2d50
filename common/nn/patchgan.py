"""PatchGAN: a 2-D conv discriminator scoring overlapping patches of an image or a
spectrogram (Isola et al. 2017, pix2pix; the ``NLayerDiscriminator`` that VQGAN and
latent diffusion train their autoencoders against).

Layout (``channels=c``, ``n_layers=n``): a 4x4 conv to ``c`` channels at stride 2, then
``n - 1`` more stride-2 4x4 convs doubling the channels (capped at ``8c``), a stride-1
4x4 conv and a 4x4 conv to one logit per patch, every conv but the last followed by a
leaky ReLU (slope 0.2). The receptive field of a logit is 70x70 pixels for ``n = 3``.

Differences from the original, on purpose:

* no batch norm (taming's default): the GAN program scores real and fake in one batch
  (``common.train.gan``), and batch statistics over left-padded spectrograms would let
  the padding and the other half of the batch into every output. ``weight_norm`` is
  the normalisation on offer.
* ``Conv(padding="same")``: a stride-2 4x4 conv pads (1, 1) as PyTorch's ``padding=1``
  does; the stride-1 ones keep the size instead of losing a pixel.

Inputs are channels last, ``[B, H, W, C]``, or ``[B, H, W]`` (one channel: a mel
spectrogram ``[B, T, n_mels]`` with time as ``H``). Padding along ``H`` (time) is
handled as the codec discriminators handle it: ``masks(valid [B, H])`` gives, per output,
the positions whose whole stride-hop of input rows is valid, and ``patch_disc_fn`` is
the ``disc_fn`` of ``common.train.gan`` (which zeroes padded rows before the
discriminator sees them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.conv import Conv
from common.nn.masks import conv_masks
from common.nn.patchgan_config import PatchGANConfig

LEAKY_SLOPE = 0.2  # pix2pix / taming


class PatchGAN(nnx.Module):
    """``x [B, H, W, C]`` (or ``[B, H, W]``) -> ``(logits [B, H', W', 1], features)``:
    one logit per patch, the features every conv's activation but the last's."""

    def __init__(self, cfg: PatchGANConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        k = (cfg.kernel_size, cfg.kernel_size)
        kw = dict(weight_norm=cfg.weight_norm, dtype=cfg.dtype, rngs=rngs)
        widths = [cfg.channels * min(2 ** i, 8) for i in range(cfg.n_layers + 1)]
        layers, cin = [], cfg.in_channels
        for i, w in enumerate(widths):
            stride = 2 if i < cfg.n_layers else 1
            layers.append(Conv(cin, w, k, stride=(stride, stride), **kw))
            cin = w
        self.convs = nnx.List(layers)
        self.post = Conv(cin, 1, k, **kw)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        h = x[..., None] if x.ndim == 3 else x
        feats = []
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv(h), LEAKY_SLOPE)
            feats.append(h)
        return self.post(h), feats

    def masks(self, valid: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """``valid [B, H]`` -> masks ``[B, H', 1, 1]`` of the logits and of every feature
        map (broadcastable to them): a row is valid when its stride-hop of input rows is."""
        feats = conv_masks(self.convs, valid[:, :, None, None])
        return feats[-1], feats  # the logits' conv is unstrided


def patch_disc_fn(disc: PatchGAN, x: jax.Array, valid: jax.Array | None):
    """``disc_fn`` for ``common.train.gan``: ``([logits], [features], masks)``, one
    sub-discriminator; masks ``([logit mask], [feature masks])`` from ``valid [B, H]``
    (None without one). The program has already zeroed the padded rows."""
    logits, feats = disc(x)
    masks = None
    if valid is not None:
        lm, fms = disc.masks(jnp.asarray(valid, bool))
        masks = ([lm], [fms])
    return [logits], [feats], masks
