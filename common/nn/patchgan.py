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

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.conv import Conv
from common.nn.masks import conv_masks

LEAKY_SLOPE = 0.2  # pix2pix / taming


@dataclasses.dataclass(frozen=True)
class PatchGANConfig:
    """Sizes of a PatchGAN (``--disc.*``)."""

    in_channels: int = 1
    """input channels (1 for a spectrogram, 3 for RGB)."""
    channels: int = 64
    """the first conv's channels (``ndf``); doubled per strided conv, capped at 8x."""
    n_layers: int = 3
    """stride-2 convs: the patch a logit sees grows with them (70 px for 3)."""
    kernel_size: int = 4
    weight_norm: bool = False
    dtype: str | None = None
    """compute dtype ("bfloat16"; None: float32); parameters stay float32."""

    def __post_init__(self):
        if self.n_layers < 1 or self.channels < 1 or self.in_channels < 1:
            raise ValueError(f"disc: n_layers, channels and in_channels must be >= 1, got "
                             f"{self.n_layers}, {self.channels}, {self.in_channels}")
        if self.kernel_size < 2:
            raise ValueError(f"disc.kernel_size must be >= 2, got {self.kernel_size}")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"disc.dtype must be None, 'float32', 'bfloat16' or 'float16', "
                             f"got {self.dtype!r}")

    @classmethod
    def tiny(cls, in_channels: int = 1) -> PatchGANConfig:
        return cls(in_channels=in_channels, channels=8, n_layers=2)


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
