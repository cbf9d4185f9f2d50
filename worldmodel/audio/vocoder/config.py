"""Config of the mel vocoder and its training: ``python -m worldmodel.train vocoder``.

The vocoder turns the speech front end's log-mel frames (``common.speech.MelFeatures``:
16 kHz, 25 ms window, 10 ms hop, 80 bands, the features the audio CVAE produces) back
into a waveform. The model is Vocos (Siuzdak 2023): a ConvNeXt backbone at the frame
rate and a head predicting STFT magnitude and phase, inverted by an iSTFT whose hop is
the mel hop, so ``T`` frames give ``T * hop`` samples.

Presets: ``tiny`` (the default run and the tests: a few minutes on a 2-core CPU),
``cpu`` (the CPU recipe, ~30 min), ``base`` (Vocos's published sizes: dim 512, intermediate
1536, 8 layers, with the GAN on) and ``hifigan`` (the second generator: HiFi-GAN V1's
sizes with upsampling strides for the 10 ms hop; ``--generator hifigan`` on any
preset, e.g. with ``--hifigan.upsample-initial-channel 64`` on ``tiny``).
"""

from __future__ import annotations

import dataclasses
import math

from common.data.sources import SourceConfig
from common.speech.config import MelFeatures
from common.train.configs import GANConfig, OptimizerConfig, TrainConfig
from tokenizer.codec.configs import DiscriminatorConfig
from worldmodel.audio.corpora import DEFAULT, RECIPE

KIND = "worldmodel.vocoder"  # what run.json records for these runs
PADDINGS = ("same", "center")
GENERATORS = ("vocos", "hifigan")


@dataclasses.dataclass(frozen=True)
class VocosConfig:
    """Vocos's generator: ``VocosBackbone`` + ``ISTFTHead`` (``vocos==0.1.0`` names)."""

    n_mels: int = 80
    """input features per frame (the front end's mel bands)."""
    dim: int = 512
    intermediate_dim: int = 1536
    """ConvNeXt blocks' pointwise expansion."""
    num_layers: int = 8
    kernel_size: int = 7
    """the input conv's and the depthwise convs' kernel."""
    layer_scale_init: float = 0.0
    """initial layer scale of every block (0: Vocos's default, 1 / num_layers)."""
    n_fft: int = 640
    """the head's iSTFT size (4 hops of 160, as Vocos's 1024 is 4 of its 256)."""
    hop_length: int = 160
    """the iSTFT hop: the mel hop, so the waveform has ``frames * hop`` samples."""
    padding: str = "same"
    """iSTFT padding, ``same`` (Vocos's, ``frames * hop`` samples) or ``center``
    (``(frames - 1) * hop``)."""
    max_log_magnitude: float = 4.605170185988091
    """magnitudes are clipped to ``exp`` of this (Vocos's safeguard, 1e2)."""
    dtype: str | None = None
    """compute dtype of the backbone ("bfloat16"; None: float32); the head runs in float32."""

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"vocos.padding must be one of {PADDINGS}, got {self.padding!r}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"vocos.hop_length must be in (0, n_fft={self.n_fft}], got "
                             f"{self.hop_length}")
        if self.padding == "same" and (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"vocos.n_fft - vocos.hop_length must be even for padding "
                             f"'same', got {self.n_fft} - {self.hop_length}")
        if min(self.dim, self.intermediate_dim, self.num_layers, self.kernel_size) < 1:
            raise ValueError("vocos.dim, intermediate_dim, num_layers and kernel_size must "
                             "be >= 1")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"vocos.kernel_size must be odd (centred), got {self.kernel_size}")
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"vocos.dtype must be None, 'float32', 'bfloat16' or 'float16', "
                             f"got {self.dtype!r}")

    @classmethod
    def tiny(cls) -> VocosConfig:
        return cls(dim=64, intermediate_dim=192, num_layers=2)


@dataclasses.dataclass(frozen=True)
class HifiGanConfig:
    """HiFi-GAN's generator (Kong et al. 2020, ``jik876/hifi-gan`` ``Generator`` with
    ``ResBlock1``): transposed-conv upsamplers whose strides multiply to the mel hop,
    each followed by the mean of multi-receptive-field residual blocks."""

    n_mels: int = 80
    upsample_initial_channel: int = 512
    """channels after the input conv; every upsampler halves them."""
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2)
    """their product is the hop (160 at 16 kHz / 10 ms)."""
    upsample_kernel_sizes: tuple[int, ...] = (11, 8, 8, 4)
    """``kernel - rate`` even (HiFi-GAN's ``padding=(k - u) // 2`` is then exact)."""
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    def __post_init__(self):
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("hifigan.upsample_rates and upsample_kernel_sizes need one "
                             "entry per upsampler")
        if any((k - u) % 2 or k < u for k, u in zip(self.upsample_kernel_sizes,
                                                    self.upsample_rates, strict=True)):
            raise ValueError("hifigan.upsample_kernel_sizes: every kernel - rate must be "
                             f"even and >= 0, got {self.upsample_kernel_sizes} for "
                             f"{self.upsample_rates}")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilations):
            raise ValueError("hifigan.resblock_kernel_sizes and resblock_dilations need one "
                             "entry per residual block")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("hifigan.upsample_initial_channel must stay whole through "
                             f"{len(self.upsample_rates)} halvings")

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def tiny(cls) -> HifiGanConfig:
        return cls(upsample_initial_channel=64, resblock_kernel_sizes=(3,),
                   resblock_dilations=((1, 3),))


@dataclasses.dataclass(frozen=True)
class VocoderLoss:
    """Reconstruction loss weights: ``mel * mel_l1 + stft * mr_stft``."""

    mel: float = 15.0
    """log-mel L1 at the front end's resolution (HiFi-GAN's / Vocos's mel loss)."""
    stft: float = 1.0
    """multi-resolution STFT loss (spectral convergence + log magnitude)."""
    stft_ffts: tuple[int, ...] = (256, 512, 1024)
    """FFT sizes of its resolutions (hop n_fft / 4)."""


@dataclasses.dataclass(frozen=True)
class VocoderData:
    """Speech for the vocoder: any utterances (no labels), random crops."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    train_split: str = "train"
    eval_split: str = "validation"
    batch_size: int = 8
    segment_seconds: float = 1.0
    """random crops of this length (shorter utterances are left-padded and masked)."""
    workers: int = 0
    loudness_dbfs: float | None = -20.0


@dataclasses.dataclass(frozen=True)
class VocoderConfig:
    features: MelFeatures = dataclasses.field(default_factory=MelFeatures)
    generator: str = "vocos"
    """the generator: ``vocos`` (``model``) or ``hifigan`` (``hifigan``)."""
    model: VocosConfig = dataclasses.field(default_factory=VocosConfig)
    hifigan: HifiGanConfig = dataclasses.field(default_factory=HifiGanConfig)
    loss: VocoderLoss = dataclasses.field(default_factory=VocoderLoss)
    adversarial: bool = False
    """add the GAN losses of the codecs' discriminators (MPD, MSD, STFT); ``--gan``."""
    disc: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    gan: GANConfig = dataclasses.field(default_factory=GANConfig)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: VocoderData = dataclasses.field(default_factory=VocoderData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        name = "model" if self.generator == "vocos" else "hifigan"
        gen = self.model if self.generator == "vocos" else self.hifigan
        if gen.n_mels != self.features.n_mels:
            raise ValueError(f"{name}.n_mels={gen.n_mels} must equal "
                             f"features.n_mels={self.features.n_mels}")
        if gen.hop_length != self.features.hop_length:
            raise ValueError(f"{name}'s hop ({gen.hop_length}) must equal "
                             f"features.hop_length={self.features.hop_length} (one "
                             f"hop of samples per mel frame)")


def _adamw(lr: float, warmup: int) -> OptimizerConfig:
    # Vocos: AdamW(0.8, 0.9), lr 5e-4, cosine; clipping keeps early steps sane on CPU.
    return OptimizerConfig(name="adamw", lr=lr, b1=0.8, b2=0.9, schedule="cosine",
                           warmup_steps=warmup, min_lr_ratio=0.1, clip_norm=10.0)


# Small discriminators for the tiny GAN (--gan on the default run and the tests).
TINY_DISC = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 8), msd_scales=1,
                                msd_channels=(4, 8), stft_ffts=(512,), stft_channels=4,
                                stft_bands=((0.0, 0.5), (0.5, 1.0)))


def tiny() -> VocoderConfig:
    """The default run: a 2-layer, 64-wide Vocos on 1 s crops of the default corpus at
    16 kHz (8 speakers held out for ``worldmodel.eval vocoder``), 2000 steps of AdamW
    (a small model's steps are cheap: 3.5 min on 2 shared cores); evaluates before the first
    step and every 500. ``--gan`` adds small discriminators for the last 500 steps
    (their step is ~12x the generator's on a CPU: 14 min in all)."""
    return VocoderConfig(
        model=VocosConfig.tiny(), disc=TINY_DISC,
        gan=GANConfig(disc_start_step=1500), disc_optim=_adamw(5e-4, 0),
        data=VocoderData(source=DEFAULT),
        train=TrainConfig(steps=2000, eval_every=500, eval_batches=4, eval_at_start=True,
                          optim=_adamw(2e-3, 50)))


def cpu() -> VocoderConfig:
    """The CPU recipe (~30 min on 2 cores): a 4-layer, 192-wide Vocos on the 2 h corpus
    at 16 kHz (8 speakers held out), 4000 steps of 16 one-second crops, spectral losses
    only: 32 min on 2 busy cores, the test split re-synthesised at PESQ-WB 1.86, STOI
    0.949 (at 2000 steps, 14 min: 1.83, 0.947; BENCHMARKS.md)."""
    return VocoderConfig(
        model=VocosConfig(dim=192, intermediate_dim=576, num_layers=4), disc=TINY_DISC,
        disc_optim=_adamw(5e-4, 0),
        data=VocoderData(source=RECIPE, batch_size=16),
        train=TrainConfig(steps=4000, eval_every=1000, eval_batches=8, eval_at_start=True,
                          optim=_adamw(1e-3, 100)))


def base() -> VocoderConfig:
    """Vocos's published generator sizes (dim 512, intermediate 1536, 8 layers) at the
    front end's 16 kHz / 10 ms, trained as Vocos is: the GAN on (MPD + the codecs'
    MSD and complex-STFT discriminators; Vocos uses MPD + MRD), mel-dominated loss."""
    return VocoderConfig(
        adversarial=True, loss=VocoderLoss(mel=45.0, stft=1.0),
        gan=GANConfig(disc_start_step=0), disc_optim=_adamw(2e-4, 0),
        data=VocoderData(source=RECIPE, batch_size=16),
        train=TrainConfig(steps=100_000, eval_every=2000,
                          optim=_adamw(5e-4, 1000)))


def hifigan() -> VocoderConfig:
    """HiFi-GAN V1's generator (512 channels, MRF kernels 3/7/11, dilations 1/3/5) with
    upsamplers 5 x 4 x 4 x 2 for the 10 ms hop, trained as HiFi-GAN is: the GAN on from
    the start (MPD + MSD; here with the codecs' complex-STFT discriminator too),
    mel-dominated loss (HiFi-GAN's 45), AdamW(0.8, 0.99) at 2e-4."""
    optim = dataclasses.replace(_adamw(2e-4, 0), b2=0.99)
    return VocoderConfig(
        generator="hifigan", adversarial=True, loss=VocoderLoss(mel=45.0, stft=1.0),
        gan=GANConfig(disc_start_step=0), disc_optim=optim,
        data=VocoderData(source=RECIPE, batch_size=16),
        train=TrainConfig(steps=100_000, eval_every=2000, optim=optim))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "base": base(), "hifigan": hifigan()}
