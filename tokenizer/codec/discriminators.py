"""The discriminators every codec's GAN uses (alpha's, SNAC's optional one): multi-period
(HiFi-GAN's MPD), multi-scale (MelGAN's MSD: its ``NLayerDiscriminator`` layout, kernel-41
grouped convs strided by 4, on the waveform average-pooled by 2 per scale; DAC's ``MSD``
has the same layers) and multi-resolution complex-STFT (DAC's MRD, band-split).

Every sub-discriminator maps a waveform ``[B, N, 1]`` to ``(logits, features)``: logits
an array of any shape (one score per patch), features the list of its intermediate
activations (the final logits excluded), for the feature-matching loss. ``Discriminator``
runs them all and returns ``([logits per sub-discriminator], [[feature maps] per
sub-discriminator])``; ``gan_disc_fn`` is the ``disc_fn`` of ``common.train.gan``.

Padding. Batches are left-padded with a valid mask ``[B, N]``. ``Discriminator(wav,
valid)`` zeroes the padded samples first, so what the padding held cannot reach any
output, and ``Discriminator.masks(valid)`` gives a mask per logits array and per feature
map (broadcastable to it): an output position is valid when every input sample of the
hop it advances over is valid (``downsample_mask``, applied conv by conv with each
conv's stride; an STFT frame when its centre sample is, as ``common.audio.stft``). The
GAN losses average over the valid positions only, so the padding does not train the
discriminators and no generator gradient comes from it.

Layouts are channels last. Padding follows our ``Conv("same")`` (a frame's window never
moves with the input length), which differs from the PyTorch originals' symmetric
padding by a sample on some strided layers; no pretrained discriminator weights are
imported, so only the architecture has to match.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.audio.stft import stft
from common.nn.conv import Conv
from common.nn.masks import conv_masks, downsample_mask
from tokenizer.codec.configs import DiscriminatorConfig

LEAKY_SLOPE = 0.1  # HiFi-GAN / DAC
DAC_PEAK = 0.8  # DAC's preprocess: peak level after normalisation


def _act(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, LEAKY_SLOPE)


def zero_padding(wav: jax.Array, valid: jax.Array | None) -> jax.Array:
    """``wav [B, N, 1]`` with the samples outside ``valid [B, N]`` set to 0."""
    if valid is None:
        return wav
    return jnp.where(valid[..., None], wav, jnp.zeros((), wav.dtype))


def dac_preprocess(wav: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """DAC's ``Discriminator.preprocess``: remove each example's DC offset and normalise
    its peak to 0.8 (``y = y - mean; y = 0.8 * y / (max|y| + 1e-9)``), so the
    discriminators judge the waveform's shape, not its level. Mean and peak are over the
    valid samples only and the padding stays 0. ``wav [B, N, 1]`` (float32 math)."""
    x = wav.astype(jnp.float32)
    m = jnp.ones(x.shape[:2], bool) if valid is None else valid
    m = m[..., None]
    n = jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1)
    mean = jnp.sum(jnp.where(m, x, 0.0), axis=1, keepdims=True) / n
    y = jnp.where(m, x - mean, 0.0)
    peak = jnp.max(jnp.abs(y), axis=1, keepdims=True)
    return (DAC_PEAK * y / (peak + 1e-9)).astype(wav.dtype)


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

    def masks(self, valid: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """``valid [B, N]`` -> masks of the logits and features, ``[B, rows', p, 1]``,
        folded as the waveform is (the reflected end samples are valid where their
        sources are)."""
        b, n = valid.shape
        pad = -n % self.period
        if pad:
            valid = jnp.pad(valid, ((0, 0), (0, pad)), mode="reflect")
        m = valid.reshape(b, (n + pad) // self.period, self.period, 1)
        feats = conv_masks(self.convs, m)
        return feats[-1], feats


def _melgan_pool(x: jax.Array) -> jax.Array:
    """MelGAN's ``AvgPool1d(4, stride=2, padding=1, count_include_pad=False)`` between
    scales: ``[B, N, C] -> [B, N // 2, C]``, edge windows averaged over their in-range
    samples only."""
    window, strides, pad = (1, 4, 1), (1, 2, 1), ((0, 0), (1, 1), (0, 0))
    # A Python init value: reduce_window is differentiable only with a constant one.
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(np.ones((1, x.shape[1], 1), np.float32), 0.0, jax.lax.add,
                                  window, strides, pad)
    return total / count.astype(x.dtype)


class MelGANScaleDiscriminator(nnx.Module):
    """One scale of MelGAN's multi-scale discriminator (``NLayerDiscriminator``): a
    kernel-15 conv, kernel-41 convs strided by 4 with groups of 4 input channels, a
    kernel-5 conv and a kernel-3 conv to the logits, over the waveform at one rate."""

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

    def masks(self, valid: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """``valid [B, N]`` at this scale's rate -> masks ``[B, T', 1]`` of the logits and
        of every feature map."""
        feats = conv_masks(self.convs, valid[..., None])
        return feats[-1], feats


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

    def masks(self, valid: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """``valid [B, N]`` -> masks ``[B, frames, 1, 1]``: a frame is valid when its centre
        sample is (convs here stride along frequency only, so every map shares it)."""
        n = valid.shape[1]
        centres = np.arange(1 + n // (self.n_fft // 4)) * (self.n_fft // 4)
        m = valid[:, np.minimum(centres, n - 1)] & jnp.asarray(centres < n)
        m = m[:, :, None, None]
        return m, [m] * sum(len(convs) for convs in self.band_convs)

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
    """All sub-discriminators: ``wav [B, N, 1]`` (or ``[B, N]``), optional ``valid [B, N]``
    -> ``([logits], [[features]])`` ordered MPD periods, MSD scales, STFT resolutions.

    With ``valid`` the padded samples are zeroed first; ``cfg.preprocess == "dac"``
    then applies DAC's DC removal and peak normalisation (``dac_preprocess``). Compute
    runs in ``cfg.dtype`` (e.g. bfloat16; the STFT and the preprocessing stay float32).
    """

    def __init__(self, cfg: DiscriminatorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(weight_norm=cfg.weight_norm, dtype=cfg.dtype, rngs=rngs)
        self.mpd = nnx.List([PeriodDiscriminator(p, cfg.mpd_channels, **kw)
                             for p in cfg.periods])
        self.msd = nnx.List([MelGANScaleDiscriminator(cfg.msd_channels, **kw)
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

    def __call__(self, wav: jax.Array, valid: jax.Array | None = None
                 ) -> tuple[list[jax.Array], list[list[jax.Array]]]:
        if wav.ndim == 2:
            wav = wav[..., None]
        wav = zero_padding(wav, valid)
        if self.cfg.preprocess == "dac":
            wav = dac_preprocess(wav, valid)
        logits, feats = [], []
        for d in self.mpd:
            out, f = d(wav)
            logits.append(out)
            feats.append(f)
        x = wav
        for i, d in enumerate(self.msd):
            if i:
                x = _melgan_pool(x)
            out, f = d(x)
            logits.append(out)
            feats.append(f)
        for d in self.mrd:
            out, f = d(wav)
            logits.append(out)
            feats.append(f)
        return logits, feats

    def masks(self, valid: jax.Array) -> tuple[list[jax.Array], list[list[jax.Array]]]:
        """``valid [B, N]`` (bool) -> ``([logit masks], [[feature masks]])`` in output
        order, each broadcastable to its array (see the module docstring)."""
        valid = jnp.asarray(valid, bool)
        outs = [d.masks(valid) for d in self.mpd]
        v = valid
        for i, d in enumerate(self.msd):
            if i:  # MelGAN's pool: N -> N // 2, pooled sample i advances over 2i, 2i + 1
                v = downsample_mask(v, 2, v.shape[1] // 2)
            outs.append(d.masks(v))
        outs += [d.masks(valid) for d in self.mrd]
        return [o[0] for o in outs], [o[1] for o in outs]


def gan_disc_fn(disc: Discriminator, wav: jax.Array, valid: jax.Array | None):
    """``disc_fn`` for ``common.train.gan``: ``(logits, features, masks)``, masks
    ``(logit masks, feature masks)`` from ``valid`` (None without one)."""
    logits, feats = disc(wav, valid)
    return logits, feats, (None if valid is None else disc.masks(valid))
