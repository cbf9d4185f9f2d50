"""The discriminators every codec's GAN uses (alpha's, SNAC's optional one): multi-period
(HiFi-GAN MPD), multi-scale (HiFi-GAN MSD) and multi-resolution complex-STFT (DAC's MRD,
band-split).

Every sub-discriminator maps a waveform ``[B, N, 1]`` to ``(logits, features)``: logits
an array of any shape (one score per patch), features the list of its intermediate
activations (the final logits excluded), for the feature-matching loss. ``Discriminator``
runs them all and returns the lists ``common.train.gan`` expects from ``disc_fn``:
``([logits per sub-discriminator], [[feature maps] per sub-discriminator])``.

Layouts are channels last. Padding follows our ``Conv("same")`` (a frame's window never
moves with the input length), which differs from the PyTorch originals' symmetric
padding by a sample on some strided layers; no pretrained discriminator weights are
imported, so only the architecture has to match.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from common.audio.stft import stft
from common.nn.conv import Conv
from tokenizer.codec.configs import DiscriminatorConfig

LEAKY_SLOPE = 0.1  # HiFi-GAN / DAC


def _act(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, LEAKY_SLOPE)


class PeriodDiscriminator(nnx.Module):
    """One MPD branch: the waveform folded to ``[B, N / p, p, 1]`` (reflect-padded at the
    end to a multiple of p) and 2-D convs with kernels ``(5, 1)`` along time only."""

    def __init__(self, period: int, channels: tuple[int, ...], *, weight_norm: bool = True,
                 dtype=None, rngs: nnx.Rngs):
        self.period = period
        kw = dict(weight_norm=weight_norm, dtype=dtype, rngs=rngs)
        chans = (1, *channels)
        self.convs = nnx.List(
            [Conv(chans[i], chans[i + 1], (5, 1), stride=(3, 1), **kw)
             for i in range(len(channels))]
            + [Conv(chans[-1], chans[-1], (5, 1), **kw)])
        self.post = Conv(chans[-1], 1, (3, 1), **kw)

    def __call__(self, wav: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        b, n, _ = wav.shape
        pad = -n % self.period
        if pad:
            wav = jnp.pad(wav, ((0, 0), (0, pad), (0, 0)), mode="reflect")
        h = wav.reshape(b, (n + pad) // self.period, self.period, 1)
        feats = []
        for conv in self.convs:
            h = _act(conv(h))
            feats.append(h)
        return self.post(h), feats


def _avg_pool(x: jax.Array) -> jax.Array:
    """PyTorch ``AvgPool1d(4, 2, padding=2)`` (zeros counted): ``[B, N, C] -> [B, N/2+1, C]``."""
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 4, 1), (1, 2, 1),
                              ((0, 0), (2, 2), (0, 0)))
    return s / 4.0


class ScaleDiscriminator(nnx.Module):
    """One MSD branch: 1-D convs over the waveform at one rate."""

    def __init__(self, channels: tuple[int, ...], *, weight_norm: bool = True, dtype=None,
                 rngs: nnx.Rngs):
        kw = dict(weight_norm=weight_norm, dtype=dtype, rngs=rngs)
        layers = [Conv(1, channels[0], 15, **kw)]
        for cin, cout in itertools.pairwise(channels):
            groups = max(cin // 4, 1)
            if cout % groups:
                raise ValueError(f"MSD: {cout} channels do not split into {groups} groups")
            layers.append(Conv(cin, cout, 41, stride=4, groups=groups,
                               **kw))
        layers.append(Conv(channels[-1], channels[-1], 5, **kw))
        self.convs = nnx.List(layers)
        self.post = Conv(channels[-1], 1, 3, **kw)

    def __call__(self, wav: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        h, feats = wav, []
        for conv in self.convs:
            h = _act(conv(h))
            feats.append(h)
        return self.post(h), feats


class STFTDiscriminator(nnx.Module):
    """One resolution of the complex-STFT discriminator (DAC's ``DiscriminatorR``).

    The STFT (hann, hop fft/4, centred) as ``[B, frames, bins, 2]`` (real, imaginary),
    split into frequency bands; each band runs its own 2-D conv stack (kernels (3, 9),
    three of them strided by 2 along frequency), the bands are concatenated along
    frequency and a (3, 3) conv gives the logits ``[B, frames, bins', 1]``.
    """

    def __init__(self, n_fft: int, channels: int, bands: tuple[tuple[float, float], ...], *,
                 weight_norm: bool = True, dtype=None, rngs: nnx.Rngs):
        self.n_fft = n_fft
        bins = n_fft // 2 + 1
        self.bands = tuple((int(lo * bins), int(hi * bins)) for lo, hi in bands)
        if any(hi <= lo for lo, hi in self.bands):
            raise ValueError(f"STFT discriminator: n_fft={n_fft} is too small for bands "
                             f"{bands} (an empty band)")
        kw = dict(weight_norm=weight_norm, dtype=dtype, rngs=rngs)

        def stack():
            return nnx.List([Conv(2, channels, (3, 9), **kw)]
                            + [Conv(channels, channels, (3, 9), stride=(1, 2), **kw)
                               for _ in range(3)]
                            + [Conv(channels, channels, (3, 3), **kw)])

        self.band_convs = nnx.List([stack() for _ in self.bands])
        self.post = Conv(channels, 1, (3, 3), **kw)

    def __call__(self, wav: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        spec = stft(wav[..., 0].astype(jnp.float32), self.n_fft, self.n_fft // 4)
        spec = jnp.stack([spec.real, spec.imag], axis=-1)  # [B, frames, bins, 2]
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs, strict=True):
            h = spec[:, :, lo:hi]
            for conv in convs:
                h = _act(conv(h))
                feats.append(h)
            outs.append(h)
        return self.post(jnp.concatenate(outs, axis=2)), feats


class Discriminator(nnx.Module):
    """All sub-discriminators: ``wav [B, N, 1] -> ([logits], [[features]])`` ordered MPD
    periods, MSD scales, STFT resolutions."""

    def __init__(self, cfg: DiscriminatorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(weight_norm=cfg.weight_norm, dtype=cfg.dtype, rngs=rngs)
        self.mpd = nnx.List([PeriodDiscriminator(p, cfg.mpd_channels, **kw)
                             for p in cfg.periods])
        self.msd = nnx.List([ScaleDiscriminator(cfg.msd_channels, **kw)
                             for _ in range(cfg.msd_scales if cfg.msd_channels else 0)])
        self.mrd = nnx.List([STFTDiscriminator(f, cfg.stft_channels, cfg.stft_bands, **kw)
                             for f in cfg.stft_ffts])
        if not (len(self.mpd) or len(self.msd) or len(self.mrd)):
            raise ValueError("discriminator: no sub-discriminators configured")

    def names(self) -> list[str]:
        """Metric names of the sub-discriminators, in output order."""
        return ([f"mpd{p}" for p in self.cfg.periods]
                + [f"msd{i}" for i in range(len(self.msd))]
                + [f"stft{f}" for f in self.cfg.stft_ffts])

    def __call__(self, wav: jax.Array) -> tuple[list[jax.Array], list[list[jax.Array]]]:
        if wav.ndim == 2:
            wav = wav[..., None]
        logits, feats = [], []
        for d in self.mpd:
            out, f = d(wav)
            logits.append(out)
            feats.append(f)
        x = wav
        for i, d in enumerate(self.msd):
            if i:
                x = _avg_pool(x)
            out, f = d(x)
            logits.append(out)
            feats.append(f)
        for d in self.mrd:
            out, f = d(wav)
            logits.append(out)
            feats.append(f)
        return logits, feats
