"""Config of SIVE's training: ``python -m worldmodel.train audio-sive``.

Presets: ``tiny`` (the default run and the tests), ``cpu`` (the CPU recipe) and
``base`` (12 Conformer layers of 256, 4 heads, kernel 31: a Conformer-S-sized encoder).
"""

from __future__ import annotations

import dataclasses

from common.data.sources import SourceConfig
from common.speech.config import ContentEncoderConfig, MelFeatures
from common.train.configs import OptimizerConfig, TrainConfig
from worldmodel.audio.corpora import DEFAULT, RECIPE

KIND = "worldmodel.sive"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class AdversaryConfig:
    """The speaker classifier behind the gradient reversal, and its schedule."""

    attention_channels: int = 128
    hidden: int = 256
    frames: bool = False
    """classify the speaker of every feature frame (speaker-invariant training as Meng
    et al. 2018 do for ASR) instead of each utterance's pooled statistics."""
    pool_norm: bool = True
    """batch-normalise the pooled statistics before the MLP (as ECAPA-TDNN does). A
    speaker shows in the content features as a small shift of their mean over time,
    about a seventh of its common offset across utterances; unnormalised, the
    classifier barely learned (speaker CE 4.2 -> 3.6 in 150 steps with no reversal
    at all) and so put no pressure on the encoder."""
    a_max: float = 0.1
    """the reversal factor after warm-up. DANN's 1.0 wrecked CTC once the classifier
    could learn (batch-normalised statistics): the tiny run's held-out PER went from
    0.52 at 0.1 to 0.63 at 0.3 and 1.0 (all blank) at 1.0 (BENCHMARKS.md)."""
    warmup_steps: int = 2000
    """steps over which the factor rises (DANN's p = step / warmup)."""
    speaker_weight: float = 1.0
    """weight of the speaker CE in the loss."""


@dataclasses.dataclass(frozen=True)
class SiveData:
    """Labelled speech: phonemes for CTC and a speaker per utterance."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    train_split: str = "train"
    eval_split: str = "validation"
    batch_size: int = 16
    max_seconds: float = 4.0
    """longer utterances are cropped (and leave CTC out: their transcript no longer
    matches)."""
    bucket_seconds: tuple[float, ...] = (2.0, 4.0)
    workers: int = 0
    loudness_dbfs: float | None = -20.0
    phoneme_vocab: str = ""
    """the CTC symbol table; empty: the corpus's ``phoneme_vocab.json``."""
    speakers: tuple[str, ...] = ()
    """the adversary's speaker table; empty: the training split's speakers (saved in
    ``config.json``)."""


@dataclasses.dataclass(frozen=True)
class SiveConfig:
    features: MelFeatures = dataclasses.field(default_factory=MelFeatures)
    encoder: ContentEncoderConfig = dataclasses.field(default_factory=ContentEncoderConfig)
    adversary: AdversaryConfig = dataclasses.field(default_factory=AdversaryConfig)
    data: SiveData = dataclasses.field(default_factory=SiveData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.encoder.n_mels != self.features.n_mels:
            raise ValueError(f"encoder.n_mels={self.encoder.n_mels} must equal "
                             f"features.n_mels={self.features.n_mels}")


def tiny() -> SiveConfig:
    """The default run: a 2-layer, 64-wide encoder on the default corpus at 16 kHz
    (8 speakers held out; its utterances are ~4 s, so batches go to 8 s and few are
    cropped out of CTC), 300 steps; the reversal rises over the first 150. CTC runs at
    twice the 25 Hz feature rate: at 25 Hz a fast utterance's phonemes (with the blanks
    between repeats) did not always fit its frames."""
    return SiveConfig(
        encoder=dataclasses.replace(ContentEncoderConfig.tiny(), ctc_upsample=2),
        adversary=AdversaryConfig(attention_channels=32, hidden=64, warmup_steps=150),
        data=SiveData(source=DEFAULT, max_seconds=8.0, bucket_seconds=(4.0, 8.0)),
        train=TrainConfig(steps=300, eval_every=100, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=30,
                                                schedule="cosine")))


def cpu() -> SiveConfig:
    """The CPU recipe (~30 min on 2 cores): a 4-layer, 96-wide encoder on the 2 h
    corpus at 16 kHz (8 of its 64 speakers held out), 2500 steps of 16 utterances; the
    reversal rises over the first 800."""
    return SiveConfig(
        encoder=ContentEncoderConfig(subsample_channels=32, dim=96, layers=4, heads=4,
                                     conv_kernel=15, ctc_upsample=2),
        adversary=AdversaryConfig(attention_channels=64, hidden=128, warmup_steps=800),
        data=SiveData(source=RECIPE, max_seconds=8.0, bucket_seconds=(4.0, 8.0)),
        train=TrainConfig(steps=2500, eval_every=250, eval_batches=8, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=150,
                                                schedule="cosine")))


def base() -> SiveConfig:
    return SiveConfig(
        encoder=ContentEncoderConfig(ctc_upsample=2),
        data=SiveData(source=RECIPE, batch_size=32),
        train=TrainConfig(steps=20_000, eval_every=1000,
                          optim=OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=1000,
                                                schedule="cosine")))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "base": base()}
