"""Config of the audio CVAE: its model (``worldmodel.audio.cvae.model``) and its
training, ``python -m worldmodel.train audio-cvae``.

Presets: ``tiny`` (the default run and the tests), ``cpu`` (the CPU recipe) and ``base``.
"""

from __future__ import annotations

import dataclasses

from common.data.sources import SourceConfig
from common.nn.patchgan_config import PatchGANConfig
from common.speech.config import ContentEncoderConfig, EcapaConfig, MelFeatures
from common.train.configs import PATCHGAN_OPTIM, GANConfig, OptimizerConfig, TrainConfig
from worldmodel.audio.corpora import DEFAULT, RECIPE


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


@dataclasses.dataclass(frozen=True)
class CvaeLossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    kl_weight: float = 1e-2
    """the KL's weight after warm-up (KL in nats per latent frame, summed over its
    channels; the reconstruction is a mean per mel bin)."""
    kl_warmup_steps: int = 1000
    """steps over which the KL weight rises linearly from 0 (the decoder first learns
    to use the latent, so the posterior does not collapse)."""
    free_bits: float = 0.0
    """nats per latent channel below which the KL gives no gradient (0: off)."""


# The GAN as VQGAN trains its autoencoder: the adversarial weight adapted to the ratio
# of the reconstruction's and the adversary's gradient norms on the decoder's last
# layer, so neither swamps the other whatever the mel's scale. Presets set the start.
GAN = GANConfig(adv_weight=0.5, adaptive_weight=True, last_layer=r"^cvae/out/",
                adaptive_max=10.0)

KIND = "worldmodel.cvae"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class CvaeData:
    """Speech for the CVAE: whole utterances (cropped past ``max_seconds``), F0 per mel
    frame; no labels (the speaker comes from the speaker encoder)."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    train_split: str = "train"
    eval_split: str = "validation"
    batch_size: int = 16
    max_seconds: float = 8.0
    bucket_seconds: tuple[float, ...] = (4.0, 8.0)
    workers: int = 0
    loudness_dbfs: float | None = -20.0
    f0_fmin: float = 60.0
    f0_fmax: float = 500.0
    f0_frame_length: int = 640
    """YIN's window in samples (40 ms at 16 kHz: longer than two periods of
    ``f0_fmin``, as YIN needs)."""
    precomputed: str = ""
    """a directory of preprocessed shards with one subdirectory per split
    (``<dir>/train``, ``<dir>/validation``), written by ``python -m
    common.data.preprocess --split S --output <dir>/S`` with the ``sive_features`` and
    ``speaker_embedding`` extractors of this run's SIVE and speaker-encoder runs: the
    training then reads the content features and the speaker embedding from them
    instead of running both encoders on every batch (utterances longer than
    ``max_seconds`` are then skipped, not cropped: their features cover the whole
    utterance). Empty: compute them on the fly."""


@dataclasses.dataclass(frozen=True)
class CvaeConfig:
    """The CVAE's training. ``sive_run`` and ``speaker_run`` name the runs whose frozen
    encoders give the content features and the speaker embedding (empty: the newest of
    each under ``runs/``); ``resolve_data`` fills in their directories and configs
    (``features``, ``content``, ``speaker_features``, ``speaker``), so a CVAE run's
    ``config.json`` rebuilds the whole model without them."""

    sive_run: str = ""
    speaker_run: str = ""
    phoneme_vocab: str = ""
    """SIVE's CTC symbol table (from its run): the evaluation reads converted speech
    with SIVE's recogniser."""
    features: MelFeatures = dataclasses.field(default_factory=MelFeatures)
    """the mel the CVAE rebuilds: SIVE's input features."""
    content: ContentEncoderConfig = dataclasses.field(default_factory=ContentEncoderConfig)
    speaker_features: MelFeatures = dataclasses.field(default_factory=MelFeatures)
    speaker: EcapaConfig = dataclasses.field(default_factory=EcapaConfig)
    model: CvaeModelConfig = dataclasses.field(default_factory=CvaeModelConfig)
    loss: CvaeLossConfig = dataclasses.field(default_factory=CvaeLossConfig)
    adversarial: bool = False
    """train the decoder against a PatchGAN on the mel spectrogram as well (``--gan``):
    the shared GAN program (``common.train.gan``: start by step or loss, adaptive
    weight, R1, instance noise), the reconstruction + KL loss as its ``rec`` term."""
    disc: PatchGANConfig = dataclasses.field(default_factory=PatchGANConfig)
    """the discriminator: a PatchGAN over the mel as a one-channel image (time x mel)."""
    gan: GANConfig = dataclasses.field(default_factory=lambda: GAN)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=lambda: PATCHGAN_OPTIM)
    """the discriminator's optimizer (VQGAN's Adam(0.5, 0.9))."""
    data: CvaeData = dataclasses.field(default_factory=CvaeData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def tiny() -> CvaeConfig:
    """The default run: a 2-block, 64-wide decoder over the newest SIVE and speaker
    encoder runs, on the default corpus at 16 kHz (8 speakers held out), 300 steps;
    the KL weight rises over the first 150; with ``--gan`` a small PatchGAN joins at
    step 150."""
    return CvaeConfig(
        model=CvaeModelConfig.tiny(),
        loss=CvaeLossConfig(kl_warmup_steps=150),
        disc=PatchGANConfig.tiny(), gan=dataclasses.replace(GAN, disc_start_step=150),
        data=CvaeData(source=DEFAULT),
        train=TrainConfig(steps=300, eval_every=100, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=30,
                                                schedule="cosine")))


def cpu() -> CvaeConfig:
    """The CPU recipe (~30 min on 2 cores) over the SIVE and speaker-encoder CPU recipes'
    runs: a 6-block, 128-wide decoder and a 16-channel latent on the 2 h corpus at
    16 kHz (8 of its 64 speakers held out), 2000 steps of 16 utterances of up to 6 s;
    the KL weight rises over the first 500; with ``--gan`` a 32-wide PatchGAN joins for
    the last 1000 steps."""
    return CvaeConfig(
        model=CvaeModelConfig(latent_dim=16, encoder_channels=(64, 128), channels=128,
                              decoder_layers=6, film_hidden=64),
        loss=CvaeLossConfig(kl_warmup_steps=500),
        disc=PatchGANConfig(channels=32), gan=dataclasses.replace(GAN, disc_start_step=1000),
        data=CvaeData(source=RECIPE, max_seconds=6.0, bucket_seconds=(3.0, 6.0)),
        train=TrainConfig(steps=2000, eval_every=250, eval_batches=8, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=100,
                                                schedule="cosine")))


def base() -> CvaeConfig:
    return CvaeConfig(
        gan=dataclasses.replace(GAN, disc_start_step=5000),
        data=CvaeData(source=RECIPE, batch_size=32),
        train=TrainConfig(steps=20_000, eval_every=1000,
                          optim=OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=1000,
                                                schedule="cosine")))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "base": base()}
