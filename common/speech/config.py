"""Configs of the shared speech models, importable without jax (commands parse their
flags before the heavy stacks load): the ECAPA-TDNN sizes and the log-mel front end."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MelFeatures:
    """Log-mel front end (librosa's mel definition, ``common.audio.mel``)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    """25 ms at 16 kHz."""
    hop_length: int = 160
    """10 ms at 16 kHz."""
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    log_floor: float = 1e-6

    def __post_init__(self):
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"MelFeatures.win_length must be in (0, n_fft={self.n_fft}], "
                             f"got {self.win_length}")


@dataclasses.dataclass(frozen=True)
class EcapaConfig:
    """ECAPA-TDNN sizes (SpeechBrain's argument names)."""

    n_mels: int = 80
    """input features per frame."""
    channels: tuple[int, ...] = (1024, 1024, 1024, 1024, 3072)
    """the first TDNN, the three SE-Res2Net blocks, and the aggregation TDNN."""
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    attention_channels: int = 128
    """hidden width of the pooling's attention."""
    res2net_scale: int = 8
    """channel groups of a Res2Net block (must divide the block's channels)."""
    se_channels: int = 128
    """bottleneck of the squeeze-excitation."""
    global_context: bool = True
    """the pooling's attention also sees the utterance mean and std."""
    embed_dim: int = 192

    def __post_init__(self):
        n = len(self.channels)
        if n < 3 or len(self.kernel_sizes) != n or len(self.dilations) != n:
            raise ValueError(f"EcapaConfig: channels, kernel_sizes and dilations need one "
                             f"entry per layer (>= 3), got {self.channels}, "
                             f"{self.kernel_sizes}, {self.dilations}")
        for c in self.channels[1:-1]:
            if c % self.res2net_scale:
                raise ValueError(f"EcapaConfig.res2net_scale={self.res2net_scale} must "
                                 f"divide every block's channels, got {c}")

    @classmethod
    def base(cls) -> EcapaConfig:
        return cls()

    @classmethod
    def tiny(cls) -> EcapaConfig:
        return cls(channels=(32, 32, 32, 32, 96), attention_channels=16, res2net_scale=4,
                   se_channels=16, embed_dim=32)


@dataclasses.dataclass(frozen=True)
class ContentEncoderConfig:
    """The content encoder (SIVE without its speaker adversary; a CTC phoneme
    recogniser): conv2d subsampling (4x in time), Conformer blocks, a CTC head."""

    n_mels: int = 80
    subsample_channels: int = 256
    """channels of the two stride-2 3x3 convs of the front end."""
    dim: int = 256
    layers: int = 12
    heads: int = 4
    ffn_mult: int = 4
    conv_kernel: int = 31
    """the Conformer convolution module's depthwise kernel."""
    vocab: int = 0
    """CTC classes, blank (0) included; 0: no CTC head (features only)."""
    ctc_upsample: int = 1
    """CTC frames per feature frame (2 doubles the frame rate for fast speech)."""

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"ContentEncoderConfig.heads={self.heads} must divide "
                             f"dim={self.dim}")
        if self.ctc_upsample not in (1, 2):
            raise ValueError(f"ContentEncoderConfig.ctc_upsample must be 1 or 2, got "
                             f"{self.ctc_upsample}")
        if self.vocab == 1:
            raise ValueError("ContentEncoderConfig.vocab must be 0 (no CTC head) or >= 2 "
                             "(blank plus at least one symbol)")

    @classmethod
    def tiny(cls, vocab: int = 0) -> ContentEncoderConfig:
        return cls(subsample_channels=16, dim=64, layers=2, heads=2, conv_kernel=15,
                   vocab=vocab)
