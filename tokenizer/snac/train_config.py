"""Configuration of SNAC fine-tuning / training runs (``python -m tokenizer.snac.train``).

``SnacConfig`` nests the model (``model``: ``tokenizer.snac.config.SnacModelConfig``),
where its weights start (``init_from``), what stays frozen, the segment-length
curriculum, the losses, the optional GAN (the shared codec discriminators), the data
and the loop (``common.train.loop.TrainConfig``). Every field is a flag by its dotted
name (``--curriculum.seconds 1 2 4``).

Presets: ``tiny`` (from scratch, tiny model, a few curriculum stages in minutes on a
CPU: the default run and the tests), ``finetune-24khz`` (decoder-only fine-tuning of the
converted 24 kHz model: pass ``--init-from`` a converted run), ``24khz`` (the full model
from scratch or from weights, encoder and decoder trained).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from common.data.sources import SourceConfig
from common.train.configs import (
    CheckpointConfig,
    GANConfig,
    LoggingConfig,
    OptimizerConfig,
    TrainConfig,
)
from tokenizer.codec.configs import DiscriminatorConfig
from tokenizer.codec.optim import dac_adamw
from tokenizer.snac.config import MODEL_PRESETS, SnacModelConfig

Part = Literal["encoder", "quantizer", "decoder"]
PARTS = ("encoder", "quantizer", "decoder")


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Segment lengths over training: stage i crops to ``seconds[i]`` with a batch of
    ``data.batch_size * batch_multipliers[i]`` for ``steps[i]`` steps; the last stage
    has no length (it runs to ``train.steps``), so ``steps`` has one entry fewer.
    One stage (``seconds=(4.0,)``, ``steps=()``) is plain fixed-length training."""

    seconds: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    """segment length in seconds of every stage (training crops to it)."""
    batch_multipliers: tuple[int, ...] = (4, 2, 1, 1)
    """per stage, the batch is ``data.batch_size`` times this."""
    steps: tuple[int, ...] = (200, 200, 200)
    """steps of every stage but the last (which runs to ``train.steps``)."""

    def __post_init__(self):
        n = len(self.seconds)
        if n < 1 or any(s <= 0 for s in self.seconds):
            raise ValueError(f"curriculum.seconds must be positive, got {self.seconds}")
        if len(self.batch_multipliers) != n or min(self.batch_multipliers) < 1:
            raise ValueError(f"curriculum.batch_multipliers needs {n} positive ints (one per "
                             f"stage), got {self.batch_multipliers}")
        if len(self.steps) != n - 1 or (self.steps and min(self.steps) < 1):
            raise ValueError(f"curriculum.steps needs {n - 1} positive ints (every stage but "
                             f"the last), got {self.steps}")


@dataclasses.dataclass(frozen=True)
class SnacLossConfig:
    """Weights of the reconstruction and quantizer losses."""

    waveform: float = 1.0
    """L1 between waveforms."""
    stft: float = 1.0
    """multi-resolution STFT loss (spectral convergence + log magnitude) over ``stft_ffts``."""
    stft_ffts: tuple[int, ...] = (1024, 2048, 4096)
    """FFT sizes of the STFT loss's resolutions (hop = n_fft / 4)."""
    mel: float = 0.0
    """multi-scale log-mel L1 (0: off; DAC's 15 when training from scratch helps)."""
    commitment: float = 0.25
    """commitment loss (DAC: 0.25); it pulls a trainable encoder even with a frozen quantizer."""
    codebook: float = 1.0
    """the quantizer's codebook loss (DAC: 1.0); no effect on a frozen quantizer."""


@dataclasses.dataclass(frozen=True)
class SnacDataConfig:
    """Where the training audio comes from and how it is batched."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    """the dataset (default: the embedded espeak corpus, built on first use)."""
    train_split: str = "train"
    """name of the training split."""
    eval_split: str = "validation"
    """name of the evaluation split."""
    batch_size: int = 8
    """the base global batch (each stage multiplies it)."""
    eval_seconds: float = 0.0
    """evaluation segment length (0: the curriculum's last stage's)."""
    workers: int = 0
    """grain worker processes (0: decode in the main process)."""
    loudness_dbfs: float | None = -20.0
    """RMS loudness target (None: as recorded)."""


@dataclasses.dataclass(frozen=True)
class SnacConfig:
    """A SNAC training run: model, initial weights (``init_from``; empty: random), frozen
    parts, curriculum, losses, GAN, data and loop."""

    model: SnacModelConfig = dataclasses.field(default_factory=SnacModelConfig)
    init_from: str = ""
    """a run directory or published model folder to start from; its config replaces ``model``."""
    freeze: tuple[Part, ...] = ()
    """parts without updates; encoder + quantizer frozen: decoder-only, no gradient through them."""
    curriculum: CurriculumConfig = dataclasses.field(default_factory=CurriculumConfig)
    loss: SnacLossConfig = dataclasses.field(default_factory=SnacLossConfig)
    adversarial: bool = False
    """add the GAN losses of the shared discriminators (MPD, MSD, STFT)."""
    disc: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    gan: GANConfig = dataclasses.field(default_factory=GANConfig)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: SnacDataConfig = dataclasses.field(default_factory=SnacDataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        bad = [p for p in self.freeze if p not in PARTS]
        if bad:
            raise ValueError(f"freeze: unknown parts {bad}; allowed: {PARTS}")
        if set(self.freeze) == set(PARTS):
            raise ValueError("freeze: everything frozen leaves nothing to train")
        if sum(self.curriculum.steps) >= self.train.steps and self.curriculum.steps:
            raise ValueError(f"curriculum.steps {self.curriculum.steps} add up to "
                             f"{sum(self.curriculum.steps)}, not fewer than train.steps "
                             f"{self.train.steps}: the last stage would never run")

    @property
    def decoder_only(self) -> bool:
        return {"encoder", "quantizer"} <= set(self.freeze)


def tiny() -> SnacConfig:
    # Four short curriculum stages on a 2-core CPU: each new segment length compiles
    # the step once, so the stages are few and the segments short.
    steps = 24
    return SnacConfig(
        model=MODEL_PRESETS["tiny"],
        curriculum=CurriculumConfig(seconds=(0.25, 0.5, 1.0), batch_multipliers=(4, 2, 1),
                                    steps=(8, 8)),
        loss=SnacLossConfig(stft_ffts=(256, 512, 1024)),
        disc=DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 8), msd_scales=1,
                                 msd_channels=(4, 8), stft_ffts=(512,), stft_channels=4,
                                 stft_bands=((0.0, 0.5), (0.5, 1.0))),
        disc_optim=dac_adamw(1e-3, 0),
        data=SnacDataConfig(batch_size=2),
        train=TrainConfig(steps=steps, eval_every=8, eval_batches=2, optim=dac_adamw(1e-3, 2),
                          checkpoint=CheckpointConfig(every=8),
                          logging=LoggingConfig(log_every=4, audio_every=steps)),
    )


def finetune_24khz() -> SnacConfig:
    steps = 8000
    return SnacConfig(
        model=MODEL_PRESETS["24khz"], freeze=("encoder", "quantizer"),
        curriculum=CurriculumConfig(seconds=(1.0, 2.0, 3.0, 4.0),
                                    batch_multipliers=(4, 2, 1, 1), steps=(1000, 1000, 2000)),
        data=SnacDataConfig(source=SourceConfig(corpus_hours=2.0), batch_size=8, workers=4),
        train=TrainConfig(steps=steps, eval_every=500, eval_batches=8,
                          optim=dac_adamw(5e-5, 200),
                          checkpoint=CheckpointConfig(every=500),
                          logging=LoggingConfig(log_every=50, audio_every=1000)),
    )


def full_24khz() -> SnacConfig:
    steps = 200000
    return dataclasses.replace(
        finetune_24khz(), freeze=(), adversarial=True,
        loss=SnacLossConfig(mel=15.0),
        disc_optim=dac_adamw(1e-4, 0),
        train=TrainConfig(steps=steps, eval_every=5000, eval_batches=16,
                          optim=dac_adamw(1e-4, 1000),
                          checkpoint=CheckpointConfig(every=5000),
                          logging=LoggingConfig(log_every=100, audio_every=10000)),
        curriculum=CurriculumConfig(steps=(10000, 10000, 20000)))


PRESETS = {"tiny": tiny(), "finetune-24khz": finetune_24khz(), "24khz": full_24khz()}
