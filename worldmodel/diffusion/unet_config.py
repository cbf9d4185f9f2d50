"""Config of the UNet denoiser (``worldmodel.diffusion.unet``).

No jax or flax import: commands parse configs before jax loads.

Presets: ``tiny`` (tests and CPU runs: 16 wide, two levels) and ``base`` (the defaults: an
ADM-sized network, Dhariwal & Nichol 2021, for 32x32x4 latents of the f=8 image VAE).
"""

from __future__ import annotations

import dataclasses

DTYPES = (None, "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Sizes and conditioning of the DDPM / ADM UNet."""

    in_channels: int = 4
    """channels of the (latent) image the network denoises; also its output's."""
    channels: int = 192
    """the first level's width; level ``i`` has ``channels * channel_mult[i]``. Also the
    width of the sinusoidal time features (even); the embedding is ``4 * channels``."""
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    """one entry per resolution level; every level but the last halves the size, so the
    input's sides must be multiples of ``2 ** (len - 1)`` (``side_multiple``)."""
    num_res_blocks: int = 2
    """residual blocks per level on the way down (the way up has one more)."""
    attention_levels: tuple[int, ...] = (1, 2, 3)
    """indices into ``channel_mult`` of the levels whose residual blocks are followed by
    self-attention; the middle (lowest resolution) always has one."""
    num_heads: int = 6
    """attention heads (must divide the width of every level that attends)."""
    groups: int = 32
    """GroupNorm groups (must divide every width)."""
    num_classes: int = 0
    """0: no class conditioning; else a learned table of ``num_classes + 1`` rows, the last
    (index ``num_classes``) the null class of classifier-free guidance."""
    cond_dim: int = 0
    """0: no vector conditioning; else the width of a per-example condition vector (a
    speaker or caption embedding), whose null is the zero vector."""
    cond_dropout: float = 0.1
    """probability with which training replaces an example's condition by the null one
    (``conditioning.drop_condition``), so the network also learns the unconditional
    prediction classifier-free guidance needs (as ``DiTConfig.cond_dropout``)."""
    dtype: str | None = None
    """compute dtype ("bfloat16"; None: float32); parameters and norms stay float32."""

    def __post_init__(self):
        if self.in_channels < 1:
            raise ValueError(f"UNetConfig.in_channels must be >= 1, got {self.in_channels}")
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"UNetConfig.channels must be even and >= 2 (the sinusoidal "
                             f"time features pair a cosine with a sine), got {self.channels}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult needs one or more entries >= 1, "
                             f"got {self.channel_mult}")
        if self.num_res_blocks < 1:
            raise ValueError(f"UNetConfig.num_res_blocks must be >= 1, got {self.num_res_blocks}")
        levels = range(len(self.channel_mult))
        if (any(i not in levels for i in self.attention_levels)
                or len(set(self.attention_levels)) != len(self.attention_levels)):
            raise ValueError(f"UNetConfig.attention_levels must be distinct level indices in "
                             f"{list(levels)}, got {self.attention_levels}")
        widths = self.widths
        if self.groups < 1 or any(w % self.groups for w in (self.channels, *widths)):
            raise ValueError(f"UNetConfig.groups={self.groups} must divide every width "
                             f"(channels={self.channels} x channel_mult={self.channel_mult})")
        attending = sorted({widths[i] for i in (*self.attention_levels, len(widths) - 1)})
        if self.num_heads < 1 or any(w % self.num_heads for w in attending):
            raise ValueError(f"UNetConfig.num_heads={self.num_heads} must divide the width of "
                             f"every attending level (the middle included): {attending}")
        if self.num_classes < 0:
            raise ValueError(f"UNetConfig.num_classes must be >= 0 (0: unconditioned), "
                             f"got {self.num_classes}")
        if self.cond_dim < 0:
            raise ValueError(f"UNetConfig.cond_dim must be >= 0 (0: no vector condition), "
                             f"got {self.cond_dim}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"UNetConfig.cond_dropout must be in [0, 1), "
                             f"got {self.cond_dropout}")
        if self.dtype not in DTYPES:
            raise ValueError(f"UNetConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def widths(self) -> tuple[int, ...]:
        """The width of every level, highest resolution first."""
        return tuple(self.channels * m for m in self.channel_mult)

    @property
    def emb_dim(self) -> int:
        """Width of the time (+ condition) embedding every residual block reads."""
        return 4 * self.channels

    @property
    def side_multiple(self) -> int:
        """What the input's height and width must be multiples of: ``2 ** (levels - 1)``."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def tiny(cls, **overrides) -> UNetConfig:
        """16 wide, levels (16, 32), one block per level, attention at the lowest level."""
        return cls(**{**dict(channels=16, channel_mult=(1, 2), num_res_blocks=1,
                             attention_levels=(1,), num_heads=2, groups=8), **overrides})

    @classmethod
    def base(cls, **overrides) -> UNetConfig:
        """The defaults: ADM's ImageNet-64 widths (192, 384, 576, 768), two blocks per level
        and attention at every level but the first, for 32x32 latents (resolutions 32, 16,
        8, 4). ADM fixes 64 channels per head; 6 heads give 64 to 128 here."""
        return cls(**overrides)
