"""``PatchGANConfig``: the sizes of ``common.nn.patchgan.PatchGAN``.

Its own module so that model configs (parsed by the commands before jax loads) import
it without jax and flax.
"""

from __future__ import annotations

import dataclasses


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
