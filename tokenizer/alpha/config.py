"""Configuration of the alpha codec and its training run, with the named presets.

``AlphaConfig`` nests the model (``codec``: the conv stacks, ``quantizer``), the
discriminator, the loss weights, the GAN schedule, the data and the training loop
(``common.train.loop.TrainConfig``). Every field is a command-line flag of
``python -m tokenizer.alpha.train`` by its dotted name (``--codec.channels 64``).

Presets: ``tiny`` (a few minutes on a 2-core CPU, for tests and the default run),
``small`` (a real GPU run), ``base`` (DAC-sized).
"""

from __future__ import annotations

import dataclasses
import math
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

QuantizerKind = Literal["phoneme_bsq", "bsq", "vq", "rvq", "fsq"]


@dataclasses.dataclass(frozen=True)
class ConvStackConfig:
    """Shared by the encoder and decoder (the decoder runs the strides in reverse).

    Attributes:
      channels: encoder channels after the input conv (doubled by every down block).
      decoder_channels: decoder channels before the first up block (halved by each).
      strides: downsampling factors; their product is the hop (samples per latent frame).
      dilations: of the residual units in every block.
      latent_dim: width of the latent frames (and the transformer).
      transformer_layers / transformer_heads / window: the RoPE transformer at the
        latent rate (0 layers: none); ``window`` limits attention to that many past
        frames (streaming-friendly), None = full.
      causal: causal convs and attention (streaming).
      weight_norm: weight-normalised convs (as DAC).
    """

    channels: int = 32
    decoder_channels: int = 256
    strides: tuple[int, ...] = (2, 4, 6, 10)
    dilations: tuple[int, ...] = (1, 3, 9)
    latent_dim: int = 128
    transformer_layers: int = 2
    transformer_heads: int = 4
    window: int | None = None
    causal: bool = False
    weight_norm: bool = True
    dtype: str | None = None

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    """Attributes:
      kind: ``phoneme_bsq`` (the two-stage quantizer: a phoneme VQ trained with CTC, then
        BSQ on the residual), or a single-stage baseline: ``bsq``, ``vq``, ``rvq``, ``fsq``.
      phoneme_vocab: stage-1 codebook size = the phoneme vocabulary with the CTC blank
        (0: taken from the data's phoneme vocabulary at build time).
      vq_dim: factorised (low-dim, l2-normalised) code dimension of the VQ codebooks.
      ema / dead_code_threshold: EMA codebook updates; restart codes used less than this
        (EMA count) from random latents of the batch (0: never).
      num_bits / group_size / gamma / inv_temperature: BSQ (codes of ``num_bits`` bits,
        the entropy penalty factorised over groups of ``group_size`` bits, its codebook
        term weighted ``gamma``).
      codebook_size / num_quantizers / rvq_dropout: ``vq`` and ``rvq`` (quantizer dropout
        trains every prefix of the residual levels, for variable bitrate).
      fsq_levels: levels per FSQ dimension (codebook = their product).
    """

    kind: QuantizerKind = "phoneme_bsq"
    phoneme_vocab: int = 0
    vq_dim: int = 8
    ema: bool = False
    dead_code_threshold: float = 0.0
    num_bits: int = 16
    group_size: int = 8
    gamma: float = 1.0
    inv_temperature: float = 1.0
    codebook_size: int = 1024
    num_quantizers: int = 4
    rvq_dropout: float = 0.5
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the generator's losses (DAC's ``lambdas`` for the shared ones).

    Attributes:
      mel: multi-scale log-mel L1 (DAC: 15); ``mel_n_ffts`` / ``mel_n_mels`` its scales.
      stft: multi-resolution STFT loss (spectral convergence + log magnitude).
      waveform: waveform L1.
      commitment / codebook / entropy: quantizer losses, matched by the suffix of the
        quantizer's loss names (``vq_commitment``, ``bsq_entropy``, ...).
      ctc: CTC loss of the stage-1 phoneme codes against the utterance's phonemes
        (phoneme_bsq only; batches without phonemes skip it).
    """

    mel: float = 15.0
    mel_n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    stft: float = 0.0
    waveform: float = 0.0
    commitment: float = 0.25
    codebook: float = 1.0
    entropy: float = 0.1
    ctc: float = 1.0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training audio comes from and how it is batched.

    Attributes:
      source: the dataset (``--data.source.kind corpus|folder|ljspeech|libritts|
        common_voice|hf``, ``--data.source.path``); the default is the embedded espeak
        corpus, built on first use into the cache (``$TRC_CACHE_DIR``, ``~/.cache/trc``).
      train_split / eval_split: split names.
      phoneme_vocab: a saved ``Vocab`` of phoneme symbols for the CTC stage; empty: the
        corpus's own ``phoneme_vocab.json`` (other sources without one train the stage-1
        codebook without CTC; then ``quantizer.phoneme_vocab`` sets its size).
      batch_size: the global batch (split over processes).
      max_seconds: the longest utterance; longer ones are skipped (counted) because the
        CTC stage needs whole transcripts. Utterances are batched whole, bucketed.
      bucket_seconds: bucket boundaries (each batch pads to the next: few shapes to jit).
      max_tokens: fixed phoneme length L of every batch; None: ``max_seconds`` x 40
        symbols/s rounded up to 16 (static, so the step compiles once per audio bucket).
        A transcript longer than L is skipped and counted.
      workers: grain worker processes (0: decode in the main process).
      loudness_dbfs: RMS loudness target (None: as recorded).
    """

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    train_split: str = "train"
    eval_split: str = "validation"
    phoneme_vocab: str = ""
    batch_size: int = 8
    max_seconds: float = 4.0
    bucket_seconds: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    max_tokens: int | None = None
    workers: int = 0
    loudness_dbfs: float | None = -20.0


@dataclasses.dataclass(frozen=True)
class AlphaConfig:
    sample_rate: int = 24000
    codec: ConvStackConfig = dataclasses.field(default_factory=ConvStackConfig)
    quantizer: QuantizerConfig = dataclasses.field(default_factory=QuantizerConfig)
    disc: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    gan: GANConfig = dataclasses.field(default_factory=GANConfig)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.sample_rate % self.codec.hop:
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of the hop "
                             f"{self.codec.hop} (codec.strides {self.codec.strides})")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.codec.hop


def tiny() -> AlphaConfig:
    # Sized for the default run on a 2-core CPU: one bucket (one compile of the step),
    # a few minutes of steps; the architecture is the full one, only narrower.
    steps = 60
    return AlphaConfig(
        sample_rate=24000,
        codec=ConvStackConfig(channels=4, decoder_channels=32, strides=(2, 4, 6, 10),
                              dilations=(1, 3), latent_dim=32, transformer_layers=1,
                              transformer_heads=2),
        quantizer=QuantizerConfig(num_bits=8, group_size=4),
        disc=DiscriminatorConfig(periods=(2, 3, 5), mpd_channels=(4, 8), msd_scales=2,
                                 msd_channels=(4, 8), stft_ffts=(512,), stft_channels=4,
                                 stft_bands=((0.0, 0.25), (0.25, 0.5), (0.5, 1.0))),
        loss=LossConfig(mel_n_ffts=(64, 256, 1024), mel_n_mels=(10, 40, 80)),
        gan=GANConfig(disc_start_step=30),
        disc_optim=dac_adamw(1e-3, 0),
        data=DataConfig(batch_size=4, max_seconds=4.0, bucket_seconds=(4.0,)),
        train=TrainConfig(steps=steps, eval_every=steps, eval_batches=2,
                          optim=dac_adamw(1e-3, 5),
                          checkpoint=CheckpointConfig(every=30),
                          logging=LoggingConfig(log_every=10, audio_every=steps)),
    )


def small() -> AlphaConfig:
    steps = 20000
    return AlphaConfig(
        codec=ConvStackConfig(channels=32, decoder_channels=512, latent_dim=256,
                              transformer_layers=2, transformer_heads=4, dtype="bfloat16"),
        quantizer=QuantizerConfig(num_bits=16, group_size=8),
        disc=DiscriminatorConfig(mpd_channels=(16, 64, 256, 512),
                                 msd_channels=(16, 64, 256, 512), stft_channels=16),
        gan=GANConfig(disc_start_step=2000),
        disc_optim=dac_adamw(2e-4, 0),
        data=DataConfig(source=SourceConfig(corpus_hours=2.0), batch_size=16, workers=4),
        train=TrainConfig(steps=steps, eval_every=1000, eval_batches=8,
                          optim=dac_adamw(2e-4, 500),
                          checkpoint=CheckpointConfig(every=1000),
                          logging=LoggingConfig(log_every=50, audio_every=2000)),
    )


def base() -> AlphaConfig:
    steps = 400000
    return AlphaConfig(
        codec=ConvStackConfig(channels=64, decoder_channels=1536, latent_dim=512,
                              transformer_layers=4, transformer_heads=8, dtype="bfloat16"),
        quantizer=QuantizerConfig(num_bits=18, group_size=9),
        gan=GANConfig(disc_start_step=0),
        disc_optim=dac_adamw(1e-4, 0),
        data=DataConfig(source=SourceConfig(corpus_hours=20.0), batch_size=72, workers=8),
        train=TrainConfig(steps=steps, eval_every=5000, eval_batches=16,
                          optim=dac_adamw(1e-4, 1000),
                          checkpoint=CheckpointConfig(every=5000),
                          logging=LoggingConfig(log_every=100, audio_every=10000)),
    )


PRESETS = {"tiny": tiny(), "small": small(), "base": base()}
