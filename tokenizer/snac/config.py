"""The SNAC architecture's settings and the published models' values.

``SnacModelConfig`` has the fields of the PyTorch package's ``SNAC(...)`` constructor
(and of the ``config.json`` published next to its weights) under the same names, plus
``dtype``. ``from_published`` reads such a ``config.json`` dict.

Presets: ``24khz`` (speech: 19.8M parameters, codes at 12 / 23 / 47 Hz, 0.98 kbit/s),
``32khz`` and ``44khz`` (music: four levels at strides 8 / 4 / 2 / 1, local attention
over windows of 32 frames), and ``tiny`` (the 24 kHz layout, narrow, for tests and CPU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# The PyTorch package's constructor arguments, in its order.
PUBLISHED_FIELDS = ("sampling_rate", "encoder_dim", "encoder_rates", "latent_dim",
                    "decoder_dim", "decoder_rates", "attn_window_size", "codebook_size",
                    "codebook_dim", "vq_strides", "noise", "depthwise")


@dataclasses.dataclass(frozen=True)
class SnacModelConfig:
    """The SNAC architecture (the arguments of ``snac.SNAC``, same names)."""

    sampling_rate: int = 24000
    """audio rate in Hz (mono)."""
    encoder_dim: int = 48
    """channels after the first conv; each encoder block doubles them."""
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    """encoder strides; their product is the hop (samples per latent frame)."""
    latent_dim: int | None = None
    """latent channels (None: ``encoder_dim * 2 ** len(encoder_rates)``)."""
    decoder_dim: int = 1024
    """channels after the decoder's input convs; each block halves them."""
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    """decoder (transposed-conv) strides; their product must be the hop."""
    attn_window_size: int | None = None
    """local attention over windows of this many latent frames (None: no attention)."""
    codebook_size: int = 4096
    """codebook entries per level."""
    codebook_dim: int = 8
    """the (factorised, l2-normalised) dimension of the codebook entries."""
    vq_strides: tuple[int, ...] = (4, 2, 1)
    """one residual level per entry: latent frames averaged per code (coarse levels first)."""
    noise: bool = True
    """the decoder's learned noise blocks exist (noise is added only when given a key)."""
    depthwise: bool = True
    """depthwise (grouped) dilated convs."""
    dtype: str = "float32"
    """compute dtype ("float32" or "bfloat16"); parameters stay float32."""

    def __post_init__(self):
        for name in ("encoder_rates", "decoder_rates", "vq_strides"):
            value = tuple(int(v) for v in getattr(self, name))
            if not value or min(value) < 1:
                raise ValueError(f"SnacModelConfig.{name} must be positive ints, got {value}")
            object.__setattr__(self, name, value)
        if math.prod(self.decoder_rates) != self.hop:
            raise ValueError(f"SnacModelConfig: decoder_rates {self.decoder_rates} multiply "
                             f"to {math.prod(self.decoder_rates)}, not the encoder's hop "
                             f"{self.hop} (encoder_rates {self.encoder_rates})")
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ValueError(f"SnacModelConfig.decoder_dim {self.decoder_dim} must be "
                             f"divisible by 2**{len(self.decoder_rates)} (each block halves it)")
        if self.attn_window_size is not None and (
                self.attn_window_size < 1 or self.dim % 64 or self.decoder_dim % 64):
            raise ValueError("SnacModelConfig.attn_window_size needs latent and decoder "
                             "channels that are multiples of the 64-dim attention heads, got "
                             f"{self.dim} and {self.decoder_dim}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"SnacModelConfig.dtype must be 'float32' or 'bfloat16', "
                             f"got {self.dtype!r}")

    @property
    def dim(self) -> int:
        """The latent channels."""
        if self.latent_dim is not None:
            return self.latent_dim
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        return math.prod(self.encoder_rates)

    @property
    def pad_multiple(self) -> int:
        """Inputs are right-padded with zeros to a multiple of this many samples: a whole
        number of the coarsest level's codes and of attention windows."""
        return self.hop * math.lcm(self.vq_strides[0], self.attn_window_size or 1)

    def padded_length(self, num_samples: int) -> int:
        return -(-num_samples // self.pad_multiple) * self.pad_multiple

    def code_lengths(self, num_samples: int) -> tuple[int, ...]:
        """Codes per level for a waveform of ``num_samples`` (after padding)."""
        frames = self.padded_length(num_samples) // self.hop
        return tuple(frames // s for s in self.vq_strides)

    @property
    def code_rates(self) -> tuple[float, ...]:
        """Codes per second per level."""
        return tuple(self.sampling_rate / self.hop / s for s in self.vq_strides)

    @property
    def bitrate(self) -> float:
        """Bits per second of all levels together."""
        return sum(self.code_rates) * math.log2(self.codebook_size)

    def published(self) -> dict[str, Any]:
        """The ``config.json`` dict the PyTorch package takes (``SNAC(**d)``)."""
        d = {k: getattr(self, k) for k in PUBLISHED_FIELDS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_published(cls, d: Mapping[str, Any], **overrides: Any) -> SnacModelConfig:
        """From a published ``config.json`` dict; unknown keys are an error naming them."""
        unknown = sorted(set(d) - set(PUBLISHED_FIELDS))
        if unknown:
            raise ValueError(f"unknown SNAC config keys {unknown}; known: {PUBLISHED_FIELDS}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**{**kw, **overrides})


MODEL_PRESETS: dict[str, SnacModelConfig] = {
    # hubertsiuzdak/snac_24khz
    "24khz": SnacModelConfig(),
    # hubertsiuzdak/snac_32khz
    "32khz": SnacModelConfig(sampling_rate=32000, encoder_dim=64, encoder_rates=(2, 3, 8, 8),
                             decoder_dim=1536, decoder_rates=(8, 8, 3, 2),
                             attn_window_size=32, vq_strides=(8, 4, 2, 1)),
    # hubertsiuzdak/snac_44khz
    "44khz": SnacModelConfig(sampling_rate=44100, encoder_dim=64, encoder_rates=(2, 3, 8, 8),
                             decoder_dim=1536, decoder_rates=(8, 8, 3, 2),
                             attn_window_size=32, vq_strides=(8, 4, 2, 1)),
    # The 24 kHz layout, narrow: every block kind, CPU-fast.
    "tiny": SnacModelConfig(encoder_dim=8, decoder_dim=64, codebook_size=256),
}
