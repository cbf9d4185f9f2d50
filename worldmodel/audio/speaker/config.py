"""Config of the speaker encoder's training: ``python -m worldmodel.train speaker-encoder``.

Presets: ``tiny`` (the default run and the tests: about a minute on a 2-core CPU),
``cpu`` (the CPU recipe) and ``base`` (SpeechBrain's ECAPA-TDNN: 1024 channels, 192-d
embedding, AAM margin 0.2, scale 30, 3 s crops).
"""

from __future__ import annotations

import dataclasses

from common.data.sources import SourceConfig
from common.speech.config import EcapaConfig, MelFeatures
from common.train.configs import OptimizerConfig, TrainConfig
from worldmodel.audio.corpora import DEFAULT, RECIPE

KIND = "worldmodel.speaker_encoder"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class SpeakerData:
    """Where the labelled speech comes from and how it is cut."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    """the dataset; every record needs a ``speaker`` field (the embedded corpus, LibriTTS
    and Common Voice layouts have one)."""
    train_split: str = "train"
    eval_split: str = "validation"
    """its utterances of speakers seen in training are scored (identification accuracy)."""
    batch_size: int = 16
    segment_seconds: float = 2.0
    """random crops of this length (shorter utterances are padded and masked)."""
    workers: int = 0
    """grain worker processes (0: decode in the main process)."""
    loudness_dbfs: float | None = -20.0
    speakers: tuple[str, ...] = ()
    """the classifier's speaker table; empty: the training split's speakers, sorted
    (``worldmodel.audio.speaker.data.resolve_data`` fills it in, and the run's
    ``config.json`` keeps it)."""


@dataclasses.dataclass(frozen=True)
class SpeakerEncoderConfig:
    features: MelFeatures = dataclasses.field(default_factory=MelFeatures)
    model: EcapaConfig = dataclasses.field(default_factory=EcapaConfig)
    margin: float = 0.2
    """AAM softmax's additive angular margin (radians)."""
    scale: float = 30.0
    """AAM softmax's logit scale."""
    data: SpeakerData = dataclasses.field(default_factory=SpeakerData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.model.n_mels != self.features.n_mels:
            raise ValueError(f"model.n_mels={self.model.n_mels} must equal "
                             f"features.n_mels={self.features.n_mels}")
        if not 0 <= self.margin < 1.5:
            raise ValueError(f"margin must be in [0, 1.5) radians, got {self.margin}")


def tiny() -> SpeakerEncoderConfig:
    """The default run: the narrow ECAPA on 2 s crops of the default corpus at 16 kHz
    with 8 of its 64 speakers held out (heard only in its test split, which
    ``python -m worldmodel.eval speaker-encoder`` scores), 200 steps of AdamW; evaluates
    before the first step and every 50."""
    return SpeakerEncoderConfig(
        model=EcapaConfig.tiny(),
        data=SpeakerData(source=DEFAULT, batch_size=16),
        train=TrainConfig(steps=200, eval_every=50, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=20,
                                                schedule="cosine", weight_decay=2e-5)))


def cpu() -> SpeakerEncoderConfig:
    """The CPU recipe: a 64-channel ECAPA on the 2 h corpus at 16 kHz (8 of its 64
    speakers held out for verification), 1500 steps of 32 two-second crops."""
    return SpeakerEncoderConfig(
        model=EcapaConfig(channels=(64, 64, 64, 64, 192), attention_channels=32,
                          res2net_scale=4, se_channels=32, embed_dim=64),
        data=SpeakerData(source=RECIPE, batch_size=32),
        train=TrainConfig(steps=1500, eval_every=250, eval_batches=8, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=100,
                                                schedule="cosine", weight_decay=2e-5)))


def base() -> SpeakerEncoderConfig:
    """SpeechBrain's ECAPA-TDNN recipe sizes (VoxCeleb: 3 s crops, batch 32)."""
    return SpeakerEncoderConfig(
        model=EcapaConfig.base(),
        data=SpeakerData(source=RECIPE, batch_size=32, segment_seconds=3.0),
        train=TrainConfig(steps=20_000, eval_every=1000,
                          optim=OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=1000,
                                                schedule="cosine", weight_decay=2e-5)))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "base": base()}
