"""HiFi-GAN's generator (Kong et al. 2020; ``jik876/hifi-gan`` ``models.py``
``Generator`` with ``ResBlock1``), the vocoder's second generator, channels-last:

    mel [B, T, n_mels] -> Conv(k7) -> [LeakyReLU(0.1) -> ConvTranspose(k_i, stride u_i)
        -> mean_j ResBlock1(k_j, dilations d_j)] per upsampler -> LeakyReLU(0.01)
        -> Conv(k7, 1 channel) -> tanh -> wav [B, T * prod(u)]

``ResBlock1``: per dilation d, ``x += Conv(k, 1)(lrelu(Conv(k, d)(lrelu(x))))``. Every
conv is weight-normalised with weights drawn from N(0, 0.01), as HiFi-GAN initialises
them; ``padding="same"`` is the original's ``(k - u) // 2`` / ``get_padding`` when
``k - u`` is even (the config insists). Not checked against the original (no weights are
imported); the layout follows it so that a converter could be added.

Masks: ``valid [B, T]`` frames, repeated to every stage's rate; each conv's input is
zeroed outside it (as in ``vocos.py``), so a left-padded row equals its unpadded self
on the valid samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.conv import Conv, ConvTranspose
from worldmodel.audio.vocoder.config import HifiGanConfig

_INIT = nnx.initializers.normal(stddev=0.01)  # hifi-gan's init_weights
SLOPE = 0.1  # LRELU_SLOPE


def _masked(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    return x if valid is None else jnp.where(valid[..., None], x, jnp.zeros((), x.dtype))


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, dilation: int = 1) -> Conv:
    return Conv(cin, cout, k, dilation=dilation, weight_norm=True, kernel_init=_INIT,
                rngs=rngs)


class ResBlock1(nnx.Module):
    """``x [B, N, C]``, ``valid [B, N]`` or None -> ``[B, N, C]``."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], *,
                 rngs: nnx.Rngs):
        self.convs1 = nnx.List([_conv(channels, channels, kernel_size, rngs, d)
                                for d in dilations])
        self.convs2 = nnx.List([_conv(channels, channels, kernel_size, rngs)
                                for _ in dilations])

    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            h = c1(_masked(jax.nn.leaky_relu(x, SLOPE), valid))
            x = x + c2(_masked(jax.nn.leaky_relu(h, SLOPE), valid))
        return x


class HifiGan(nnx.Module):
    """The generator: ``mel [B, T, n_mels]``, ``valid [B, T]`` (or None) -> ``(wav
    [B, T * hop] float32, wav_valid [B, T * hop] bool)``, ``hop = prod(upsample_rates)``
    (the same contract as ``Vocos``)."""

    def __init__(self, cfg: HifiGanConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = _conv(cfg.n_mels, ch, 7, rngs)
        self.ups = nnx.List([
            ConvTranspose(ch // 2 ** i, ch // 2 ** (i + 1), k, stride=u, weight_norm=True,
                          kernel_init=_INIT, rngs=rngs)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes,
                                           strict=True))])
        self.resblocks = nnx.List([
            ResBlock1(ch // 2 ** (i + 1), k, tuple(d), rngs=rngs)
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations, strict=True)])
        self.conv_post = _conv(ch // 2 ** len(cfg.upsample_rates), 1, 7, rngs)

    def __call__(self, mel: jax.Array, valid: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        if valid is None:
            valid = jnp.ones(mel.shape[:2], bool)
        x = self.conv_pre(_masked(mel, valid))
        nk = len(self.cfg.resblock_kernel_sizes)
        for i, (up, rate) in enumerate(zip(self.ups, self.cfg.upsample_rates, strict=True)):
            x = up(_masked(jax.nn.leaky_relu(x, SLOPE), valid))
            valid = jnp.repeat(valid, rate, axis=1)
            x = sum(self.resblocks[i * nk + j](x, valid) for j in range(nk)) / nk
        # torch's F.leaky_relu default slope (0.01) here, as the original
        wav = jnp.tanh(self.conv_post(_masked(jax.nn.leaky_relu(x, 0.01), valid)))[..., 0]
        return wav.astype(jnp.float32), valid
