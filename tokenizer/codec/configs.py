"""The codec layer's config dataclasses, apart from the modules they configure: a
command imports them (and so parses its flags) without loading jax."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

DiscPreprocess = Literal["none", "dac"]


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """The GAN discriminators: HiFi-GAN's MPD, MelGAN's MSD and DAC's complex-STFT MRD."""

    # The msd_* fields configure MelGAN's multi-scale discriminator (its
    # NLayerDiscriminator layout, which DAC's MSD shares), not HiFi-GAN's MSD.

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """MPD periods (empty: no MPD)."""
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024)
    """channels of the MPD's strided (5, 1) convs; an unstrided last layer repeats the last."""
    msd_scales: int = 3
    """number of scales of MelGAN's MSD (each halves the rate with MelGAN's average pool)."""
    msd_channels: tuple[int, ...] = (16, 64, 256, 1024, 1024)
    """channels of MelGAN's MSD convs (kernel 15, grouped kernel-41 strided convs, kernel 5)."""
    stft_ffts: tuple[int, ...] = (2048, 1024, 512)
    """FFT sizes of the complex-STFT discriminators (hop fft / 4)."""
    stft_channels: int = 32
    """width of every STFT band stack."""
    stft_bands: tuple[tuple[float, float], ...] = (
        (0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
    """frequency bands as fractions of the bins, each its own conv stack."""
    weight_norm: bool = True
    """weight-normalised convs (HiFi-GAN, DAC)."""
    dtype: str | None = None
    """compute dtype of the discriminators' convs ("bfloat16"; None: float32); params stay f32."""
    preprocess: DiscPreprocess = "none"
    """input preprocessing of real and fake audio: none, or dac (DC removed, peak at 0.8)."""

    def __post_init__(self):
        allowed = typing.get_args(DiscPreprocess)
        if self.preprocess not in allowed:
            raise ValueError(f"discriminator.preprocess must be one of {list(allowed)}, "
                             f"got {self.preprocess!r}")
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError("discriminator.dtype must be None, 'float32', 'bfloat16' or "
                             f"'float16', got {self.dtype!r}")
        for name in ("periods", "stft_ffts"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"discriminator.{name} must be positive: {getattr(self, name)}")
        for lo, hi in self.stft_bands:
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"discriminator.stft_bands: bad band ({lo}, {hi})")
        if self.msd_channels and any(c % 4 for c in self.msd_channels[:-1]):
            raise ValueError("discriminator.msd_channels must be multiples of 4 (grouped "
                             f"convs take 4 channels per group): {self.msd_channels}")
