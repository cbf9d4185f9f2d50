"""Config of the audio CVAE's model (``worldmodel.audio.cvae.model``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CvaeModelConfig:
    """Sizes of the CVAE. ``content_dim`` and ``speaker_dim`` come from the SIVE and
    speaker-encoder runs the CVAE reads (their configs fill them in)."""

    n_mels: int = 80
    latent_dim: int = 16
    """channels of the latent sequence (at the content rate, mel rate / 4)."""
    encoder_channels: tuple[int, int] = (128, 256)
    """the two stride-2 convs of the encoder (4x down, to SIVE's feature rate)."""
    kernel_size: int = 5
    content_dim: int = 256
    speaker_dim: int = 192
    channels: int = 256
    """the decoder's width at the mel rate."""
    decoder_layers: int = 4
    """residual conv blocks of the decoder, each FiLM-conditioned on the speaker."""
    f0: bool = True
    """condition the decoder on F0 (log Hz, normalised) and voicing per mel frame."""
    film_hidden: int = 128
    film_bound: float = 1.0
    logvar_min: float = -10.0
    logvar_max: float = 4.0
    """the posterior's log-variance is clamped to this range (no collapse to a point,
    no exploding samples)."""

    def __post_init__(self):
        if self.logvar_min >= self.logvar_max:
            raise ValueError(f"CvaeModelConfig: logvar_min={self.logvar_min} must be below "
                             f"logvar_max={self.logvar_max}")

    @classmethod
    def tiny(cls, content_dim: int = 64, speaker_dim: int = 32) -> CvaeModelConfig:
        return cls(latent_dim=8, encoder_channels=(32, 64), content_dim=content_dim,
                   speaker_dim=speaker_dim, channels=64, decoder_layers=2,
                   film_hidden=32)
