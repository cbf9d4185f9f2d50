"""Config of latent diffusion on images, ``python -m worldmodel.train image-diffusion``.

A denoiser (``worldmodel.diffusion.dit`` or ``.unet``) learns the latents of a trained
image VAE (``--vae-run``, a ``worldmodel.train image-vae`` run: its autoencoder is
loaded, frozen and checkpointed with the denoiser). On a labelled set (the digits) the
denoiser is class-conditioned, with condition dropout for classifier-free guidance.

Presets: ``tiny`` (the default run and the tests: a small DiT on the 8x8x4 latents of
32 px digits, two minutes on a 2-core CPU), ``cpu`` (the CPU recipe: the same model
longer, for the target of >= 80% of samples classified as their class) and ``small``
(DiT-S/2 or a 128-wide UNet on 32x32x4 latents: the benchmarks' accelerator size). ``--denoiser
unet`` swaps the DiT for the UNet at the same preset.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from common.data.image_config import ImagePipelineConfig
from common.train.configs import OptimizerConfig, TrainConfig
from worldmodel.diffusion.dit_config import DiTConfig
from worldmodel.diffusion.sampling_config import SamplingConfig
from worldmodel.diffusion.unet_config import UNetConfig
from worldmodel.image.vae.config import ImageVaeData, ImageVaeModelConfig

KIND = "worldmodel.image_diffusion"  # what run.json records for these runs

@dataclasses.dataclass(frozen=True)
class ImageDiffusionConfig:
    vae_run: str = ""
    """the image VAE run whose latents are learned (empty: the newest under ``runs/``)."""
    vae: ImageVaeModelConfig = dataclasses.field(default_factory=ImageVaeModelConfig)
    """the VAE's sizes: copied from ``vae_run``'s config (not set by hand)."""
    denoiser: Literal["dit", "unet"] = "dit"
    dit: DiTConfig = dataclasses.field(default_factory=DiTConfig)
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    """the denoiser's sizes; ``in_channels``, the DiT's ``input_size`` and
    ``num_classes`` follow from the VAE and the data (set by ``resolve_data``)."""
    objective: Literal["flow", "diffusion"] = "flow"
    """rectified flow (velocity, logit-normal times) or cosine v-prediction diffusion."""
    posterior_sample: bool = True
    """train on samples of the VAE's posterior (latent diffusion's choice); False: on its
    mean."""
    latent_batches: int = 8
    """training batches whose latents give the per-channel mean and standard deviation
    that normalise the latents to about unit variance (latent diffusion's scale factor,
    per channel)."""
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    per_class: int = 30
    """samples per class drawn at every eval step and scored (class accuracy and the
    Frechet distance under the digits classifier); unconditioned runs draw
    ``10 * per_class``."""
    data: ImageVaeData = dataclasses.field(default_factory=lambda: DIGITS)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.latent_batches < 1 or self.per_class < 1:
            raise ValueError(f"latent_batches and per_class must be >= 1, got "
                             f"{self.latent_batches}, {self.per_class}")
        self.sampling.check(self.objective)

    @property
    def net(self) -> DiTConfig | UNetConfig:
        """The denoiser's config."""
        return self.dit if self.denoiser == "dit" else self.unet


# The digits as the digits VAE preset sees them: whole, 32 px, unflipped, 297 held out.
DIGITS = ImageVaeData(
    train=ImagePipelineConfig(source="digits", size=32, count=1500, batch_size=32,
                              crop_scale=(1.0, 1.0), random_crop=False, hflip=False),
    eval_count=297)


def tiny() -> ImageDiffusionConfig:
    """The default run: a 4-block, 64-wide DiT (patch 2: 16 tokens) on the 8x8x4 latents
    of 32 px digits, class-conditioned, rectified flow; 3000 steps of 32."""
    return ImageDiffusionConfig(
        dit=DiTConfig(input_size=8, patch_size=2, dim=64, depth=4, num_heads=4),
        unet=UNetConfig.tiny(channels=32, attention_levels=(1,), num_heads=4),
        train=TrainConfig(steps=3000, eval_every=500, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=100,
                                                schedule="cosine")))


def cpu() -> ImageDiffusionConfig:
    """The CPU recipe: the tiny denoiser, 10000 steps."""
    t = tiny()
    return dataclasses.replace(t, train=dataclasses.replace(t.train, steps=10_000,
                                                            eval_every=1000))


def small() -> ImageDiffusionConfig:
    """The benchmarks' accelerator size: DiT-S/2 (33 M) or a 128-wide UNet on 32x32x4
    latents (the latent size of DiT's ImageNet 256 px; here 128 px digits through an
    f = 4 VAE), batch 32."""
    t = tiny()
    return dataclasses.replace(
        t, dit=DiTConfig.sized("S", input_size=32),
        unet=UNetConfig(channels=128, channel_mult=(1, 2, 2, 2), attention_levels=(1, 2),
                        num_heads=4),
        data=dataclasses.replace(DIGITS, train=dataclasses.replace(DIGITS.train, size=128)),
        train=dataclasses.replace(t.train, steps=100_000, eval_every=5000,
                                  optim=dataclasses.replace(t.train.optim, lr=1e-4,
                                                            warmup_steps=1000)))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "small": small()}
