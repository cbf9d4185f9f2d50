"""Config of the recurrent image VAE (``worldmodel.image.recurrent_vae.model``) and its
training, ``python -m worldmodel.train recurrent-vae``.

Presets: ``tiny`` (the default run and the tests: the tiny image VAE's encoder and
decoder trunk, 4 refinement steps, 32 px scenes, a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses

from common.data.image_config import ImagePipelineConfig
from common.train.configs import OptimizerConfig, TrainConfig
from worldmodel.image.vae.config import ImageVaeData, ImageVaeLossConfig, ImageVaeModelConfig

KIND = "worldmodel.recurrent_vae"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class RecurrentVaeModelConfig:
    """The image VAE's encoder and decoder trunk, and the shared refinement cell."""

    vae: ImageVaeModelConfig = dataclasses.field(default_factory=ImageVaeModelConfig)
    steps: int = 4
    """refinement steps in training (every one is scored by the loss)."""
    cell_channels: int = 0
    """the cell's width (0: the decoder trunk's last width)."""
    cell_blocks: int = 1
    """residual blocks in the cell."""
    exit_threshold: float = 0.02
    """inference stops refining an image when its mean absolute change per pixel (images
    in [-1, 1]) falls below this."""
    max_steps: int = 0
    """inference's cap on steps (0: ``steps``)."""

    def __post_init__(self):
        if self.steps < 1 or self.cell_blocks < 0 or self.cell_channels < 0:
            raise ValueError(f"model.steps must be >= 1 and cell_blocks, cell_channels >= 0, "
                             f"got {self.steps}, {self.cell_blocks}, {self.cell_channels}")
        if self.cell_channels and self.cell_channels % self.vae.groups:
            raise ValueError(f"model.cell_channels={self.cell_channels} must be a multiple of "
                             f"vae.groups={self.vae.groups}")
        if self.exit_threshold < 0 or self.max_steps < 0:
            raise ValueError("model.exit_threshold and max_steps must be >= 0")

    @property
    def width(self) -> int:
        """The cell's width."""
        return self.cell_channels or self.vae.channels * self.vae.channel_mult[0]

    @property
    def inference_steps(self) -> int:
        return self.max_steps or self.steps


@dataclasses.dataclass(frozen=True)
class RecurrentVaeConfig:
    model: RecurrentVaeModelConfig = dataclasses.field(default_factory=RecurrentVaeModelConfig)
    loss: ImageVaeLossConfig = dataclasses.field(default_factory=ImageVaeLossConfig)
    """the image VAE's loss, applied to every refinement step's image (the mean over
    steps; the KL once)."""
    data: ImageVaeData = dataclasses.field(default_factory=ImageVaeData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.data.train.size % self.model.vae.downsample:
            raise ValueError(f"data.train.size={self.data.train.size} must be a multiple of "
                             f"the VAE's downsampling ({self.model.vae.downsample})")


def tiny() -> RecurrentVaeConfig:
    """The default run: the tiny image VAE's encoder and trunk (latent 8x8x4), a 16-wide
    cell refining 4 times, on the image VAE's tiny data (32 px scenes), 2000 steps."""
    return RecurrentVaeConfig(
        model=RecurrentVaeModelConfig(vae=ImageVaeModelConfig.tiny(), steps=4),
        loss=ImageVaeLossConfig(kl_warmup_steps=100),
        data=ImageVaeData(train=ImagePipelineConfig(size=32, count=2000, batch_size=16),
                          eval_count=64),
        train=TrainConfig(steps=2000, eval_every=500, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=20,
                                                schedule="cosine")))


PRESETS = {"tiny": tiny()}
