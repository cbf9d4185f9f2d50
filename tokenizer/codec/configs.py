"""The codec layer's config dataclasses, apart from the modules they configure: a
command imports them (and so parses its flags) without loading jax."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Attributes:
      periods: MPD periods (empty: no MPD).
      mpd_channels: channels of the MPD's strided (5, 1) convs; the last layer repeats
        the last width unstrided.
      msd_scales: number of MSD scales (each halves the rate with an average pool).
      msd_channels: channels of the MSD's convs (first kernel 15, then grouped kernel-41
        strided convs with 4 input channels per group, then kernel 5).
      stft_ffts: FFT sizes of the complex-STFT discriminators (hop fft / 4).
      stft_channels: width of every STFT band stack.
      stft_bands: frequency bands as fractions of the bins, each its own conv stack.
      weight_norm: weight-normalised convs (HiFi-GAN, DAC).
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024)
    msd_scales: int = 3
    msd_channels: tuple[int, ...] = (16, 64, 256, 1024, 1024)
    stft_ffts: tuple[int, ...] = (2048, 1024, 512)
    stft_channels: int = 32
    stft_bands: tuple[tuple[float, float], ...] = (
        (0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
    weight_norm: bool = True
    dtype: str | None = None

    def __post_init__(self):
        for name in ("periods", "stft_ffts"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"discriminator.{name} must be positive: {getattr(self, name)}")
        for lo, hi in self.stft_bands:
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"discriminator.stft_bands: bad band ({lo}, {hi})")
        if self.msd_channels and any(c % 4 for c in self.msd_channels[:-1]):
            raise ValueError("discriminator.msd_channels must be multiples of 4 (grouped "
                             f"convs take 4 channels per group): {self.msd_channels}")
