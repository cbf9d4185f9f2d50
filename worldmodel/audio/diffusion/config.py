"""Config of latent diffusion on speech, ``python -m worldmodel.train audio-diffusion``.

A 1-D DiT learns the latent sequences ``[T4, Z]`` of a trained audio CVAE (``--vae-run``,
a ``worldmodel.train audio-cvae`` run: the CVAE with its frozen content and speaker
encoders is loaded, frozen and checkpointed with the denoiser), conditioned on the
utterance's speaker embedding (condition dropout for classifier-free guidance). The
CVAE's latent is what content, F0 and speaker leave unexplained, so a generated latent
is decoded with an utterance's content and F0: the generated speech says that
utterance's words in a sampled delivery. ``--vocoder-run`` (a ``worldmodel.train
vocoder`` run) turns logged mels into audio.

Presets: ``tiny`` (the default run and the tests: a 4-block, 64-wide DiT over the
newest CVAE run, a few minutes on a 2-core CPU).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from common.train.configs import OptimizerConfig, TrainConfig
from worldmodel.audio.cvae.config import CvaeConfig
from worldmodel.diffusion.dit_config import DiTConfig
from worldmodel.diffusion.sampling_config import SamplingConfig

KIND = "worldmodel.audio_diffusion"  # what run.json records for these runs


@dataclasses.dataclass(frozen=True)
class AudioDiffusionConfig:
    vae_run: str = ""
    """the audio CVAE run whose latents are learned (empty: the newest under ``runs/``)."""
    vocoder_run: str = ""
    """a vocoder run to hear logged samples with (empty: mels only)."""
    cvae: CvaeConfig = dataclasses.field(default_factory=CvaeConfig)
    """the CVAE run's config: copied from ``vae_run`` (its data gives the batches)."""
    dit: DiTConfig = dataclasses.field(default_factory=lambda: DiTConfig(
        spatial_dims=1, patch_size=1))
    """the denoiser; ``in_channels`` and ``cond_dim`` follow from the CVAE (set by
    ``resolve_data``)."""
    objective: Literal["flow", "diffusion"] = "flow"
    posterior_sample: bool = True
    """train on samples of the CVAE's posterior; False: on its mean."""
    latent_batches: int = 4
    """training batches whose latents give the per-channel normalisation."""
    batch_size: int = 0
    """utterances per step (0: the CVAE run's)."""
    precomputed: str = ""
    """a directory of preprocessed shards, one subdirectory per split (the CVAE's train
    and eval splits), holding ``cvae_latents`` of this ``vae_run`` and
    ``speaker_embedding`` of its speaker-encoder run (``python -m
    common.data.preprocess --extractors worldmodel.audio.extractors:cvae_latents
    worldmodel.audio.extractors:speaker_embedding ...``): training reads the latents and
    the speaker from them instead of running the CVAE's encoders on every batch. Empty:
    compute them on the fly."""
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    sample_batches: int = 2
    """held-out batches generated at every eval step for the mel statistics distance."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.latent_batches < 1 or self.sample_batches < 1 or self.batch_size < 0:
            raise ValueError("latent_batches and sample_batches must be >= 1, batch_size "
                             ">= 0")
        if self.dit.spatial_dims != 1:
            raise ValueError("dit.spatial_dims must be 1: CVAE latents are sequences")
        self.sampling.check(self.objective)

    @property
    def data(self):
        """The batches' config: the CVAE run's (``CvaeData``)."""
        return self.cvae.data


def tiny() -> AudioDiffusionConfig:
    """The default run: a 4-block, 64-wide 1-D DiT over the newest CVAE run, 2000 steps."""
    return AudioDiffusionConfig(
        dit=DiTConfig(spatial_dims=1, patch_size=1, input_size=64, dim=64, depth=4,
                      num_heads=4),
        train=TrainConfig(steps=2000, eval_every=500, eval_batches=4, eval_at_start=True,
                          optim=OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=100,
                                                schedule="cosine")))


PRESETS = {"tiny": tiny()}
