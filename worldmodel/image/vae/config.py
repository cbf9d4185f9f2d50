"""Config of the image VAE (``worldmodel.image.vae.model``) and its training,
``python -m worldmodel.train image-vae``.

Presets: ``tiny`` (the default run and the tests: 32 px scenes, a few minutes on a
2-core CPU), ``cpu`` (the CPU recipe: f = 8 on 64 px scenes), ``digits`` (the tiny VAE
on the labelled digits, for class-conditional diffusion) and ``base`` (latent
diffusion's f=8 autoencoder sizes on 256 px images).
"""

from __future__ import annotations

import dataclasses

from common.data.image_config import ImagePipelineConfig
from common.nn.patchgan_config import PatchGANConfig
from common.train.configs import PATCHGAN_OPTIM, GANConfig, OptimizerConfig, TrainConfig

KIND = "worldmodel.image_vae"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class ImageVaeModelConfig:
    """Sizes of the autoencoder (latent diffusion's ``AutoencoderKL`` layout)."""

    in_channels: int = 3
    channels: int = 128
    """the first level's width; level ``i`` has ``channels * channel_mult[i]``."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """one entry per resolution level; every level but the last halves the size, so the
    latent is ``2 ** (len - 1)`` times smaller per side (8 for the default)."""
    num_res_blocks: int = 2
    """residual blocks per level in the encoder (the decoder has one more)."""
    latent_channels: int = 4
    attention: bool = True
    """a self-attention block between the two residual blocks of the middle."""
    groups: int = 32
    """GroupNorm groups (every width must be a multiple)."""
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    """the posterior's log-variance is clamped to this range (latent diffusion's)."""
    dtype: str | None = None
    """compute dtype ("bfloat16"; None: float32); parameters and norms stay float32."""

    def __post_init__(self):
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"model.channel_mult needs entries >= 1, got {self.channel_mult}")
        bad = [self.channels * m for m in self.channel_mult
               if (self.channels * m) % self.groups]
        if self.channels % self.groups or bad:
            raise ValueError(f"model.groups={self.groups} must divide every width "
                             f"(channels={self.channels} x channel_mult={self.channel_mult})")
        if self.num_res_blocks < 1 or self.latent_channels < 1:
            raise ValueError("model.num_res_blocks and latent_channels must be >= 1")
        if self.logvar_min >= self.logvar_max:
            raise ValueError(f"model.logvar_min={self.logvar_min} must be below "
                             f"logvar_max={self.logvar_max}")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype must be None, 'float32', 'bfloat16' or 'float16', "
                             f"got {self.dtype!r}")

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def tiny(cls) -> ImageVaeModelConfig:
        return cls(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, groups=8)


@dataclasses.dataclass(frozen=True)
class ImageVaeLossConfig:
    """Reconstruction (per-pixel means, images in [-1, 1]) + weighted KL."""

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    ssim_weight: float = 0.0
    """weight of ``1 - SSIM`` (the structural loss offered instead of a downloaded
    perceptual network)."""
    kl_weight: float = 1e-4
    """the KL's weight after warm-up (KL in nats per latent position, summed over its
    channels; the reconstruction is a mean per pixel and channel)."""
    kl_warmup_steps: int = 0
    """steps over which the KL weight rises linearly from 0 (0: full weight at once)."""
    free_bits: float = 0.0
    """nats per latent channel below which the KL gives no gradient (0: off)."""

    def __post_init__(self):
        for name in ("l1_weight", "l2_weight", "ssim_weight", "kl_weight", "kl_warmup_steps",
                     "free_bits"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class ImageVaeData:
    """Images for the VAE: ``train`` augmented (random crops, flips), ``eval`` centred
    crops of held-out images: the last ``eval_count`` images of a fixed set (digits,
    sklearn, folder), or, for the procedural scenes, ``eval_count`` scenes of another
    seed."""

    train: ImagePipelineConfig = dataclasses.field(default_factory=ImagePipelineConfig)
    eval_count: int = 64

    def __post_init__(self):
        if self.eval_count < 1:
            raise ValueError(f"data.eval_count must be >= 1, got {self.eval_count}")

    @property
    def batch_size(self) -> int:
        """Images per step (``train.batch_size``)."""
        return self.train.batch_size


# The GAN as latent diffusion trains its autoencoder: a PatchGAN, hinge loss, the
# adversarial weight adapted to the gradient norms on the decoder's last conv.
GAN = GANConfig(loss="hinge", adv_weight=0.5, feature_weight=0.0, adaptive_weight=True,
                last_layer=r"^decoder/conv_out/", adaptive_max=1e4)


@dataclasses.dataclass(frozen=True)
class ImageVaeConfig:
    model: ImageVaeModelConfig = dataclasses.field(default_factory=ImageVaeModelConfig)
    loss: ImageVaeLossConfig = dataclasses.field(default_factory=ImageVaeLossConfig)
    adversarial: bool = False
    """train against a PatchGAN as well (``--gan``): the shared GAN program
    (``common.train.gan``: start by step or loss, adaptive weight, R1, instance noise),
    the reconstruction + KL loss as its ``rec`` term."""
    disc: PatchGANConfig = dataclasses.field(
        default_factory=lambda: PatchGANConfig(in_channels=3))
    gan: GANConfig = dataclasses.field(default_factory=lambda: GAN)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=lambda: PATCHGAN_OPTIM)
    data: ImageVaeData = dataclasses.field(default_factory=ImageVaeData)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.data.train.size % self.model.downsample:
            raise ValueError(f"data.train.size={self.data.train.size} must be a multiple of "
                             f"the VAE's downsampling ({self.model.downsample})")
        if self.disc.in_channels != self.model.in_channels:
            raise ValueError(f"disc.in_channels={self.disc.in_channels} must equal "
                             f"model.in_channels={self.model.in_channels}")


def tiny() -> ImageVaeConfig:
    """The default run: a 3-level, 16-wide VAE (0.24 M parameters, latent 8x8x4) on 32 px
    crops of 2000 procedural scenes, 2000 steps of 16 images (about 4 min on 2 CPU
    cores: held-out PSNR 8.8 -> 26.6 dB); ``--gan`` adds a small PatchGAN for the last
    500 steps."""
    return ImageVaeConfig(
        model=ImageVaeModelConfig.tiny(),
        loss=ImageVaeLossConfig(kl_warmup_steps=100),
        disc=PatchGANConfig(in_channels=3, channels=16, n_layers=2),
        gan=dataclasses.replace(GAN, disc_start_step=1500),
        data=ImageVaeData(train=ImagePipelineConfig(size=32, count=2000, batch_size=16),
                          eval_count=64),
        train=TrainConfig(steps=2000, eval_every=500, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=2e-3, warmup_steps=20,
                                                schedule="cosine")))


def cpu() -> ImageVaeConfig:
    """The CPU recipe (~45 min on 2 cores): latent diffusion's f = 8 at 4 channels (a
    4-level, 32-wide VAE, 3.0 M parameters, latent 8x8x4) on 64 px crops of the
    procedural scenes, 3000 steps of 16 images; ``--gan`` adds a 32-wide PatchGAN for
    the last 1000 steps. Held-out PSNR 8.6 -> 25.8 dB, SSIM 0.67 (BENCHMARKS.md)."""
    t = tiny()
    return dataclasses.replace(
        t, model=dataclasses.replace(t.model, channels=32, channel_mult=(1, 2, 2, 4)),
        loss=dataclasses.replace(t.loss, kl_warmup_steps=500),
        disc=PatchGANConfig(in_channels=3, channels=32, n_layers=3),
        gan=dataclasses.replace(GAN, disc_start_step=2000),
        data=dataclasses.replace(t.data, train=dataclasses.replace(t.data.train, size=64)),
        train=dataclasses.replace(t.train, steps=3000, eval_every=500,
                                  optim=dataclasses.replace(t.train.optim, lr=1e-3)))


def digits() -> ImageVaeConfig:
    """The autoencoder of class-conditional latent diffusion on digits
    (``worldmodel.train image-diffusion``): the tiny VAE (f = 4, latent 8x8x4) on
    scikit-learn's 8x8 digits scaled whole to 32 px (no crop, no flip: a mirrored digit
    is another glyph), the last 297 held out, 1500 steps of 16 (about 3 min on 2 cores)."""
    t = tiny()
    return dataclasses.replace(
        t, data=ImageVaeData(
            train=ImagePipelineConfig(source="digits", size=32, count=1500, batch_size=16,
                                      crop_scale=(1.0, 1.0), random_crop=False,
                                      hflip=False),
            eval_count=297),
        train=dataclasses.replace(t.train, steps=1500))


def base() -> ImageVaeConfig:
    """Latent diffusion's f=8, 4-channel autoencoder (channels 128, mult 1-2-4-4, two
    residual blocks per level) on 256 px images, the PatchGAN from step 50k."""
    return ImageVaeConfig(
        loss=ImageVaeLossConfig(kl_weight=1e-6),
        gan=dataclasses.replace(GAN, disc_start_step=50_001),
        data=ImageVaeData(train=ImagePipelineConfig(size=256, batch_size=16), eval_count=256),
        train=TrainConfig(steps=200_000, eval_every=5000,
                          optim=OptimizerConfig(name="adamw", lr=4.5e-6 * 16, b1=0.5,
                                                b2=0.9, warmup_steps=1000,
                                                schedule="constant")))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "digits": digits(), "base": base()}
