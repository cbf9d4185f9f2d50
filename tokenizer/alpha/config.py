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
    """Shared by the encoder and decoder (the decoder runs the strides in reverse)."""

    channels: int = 32
    """encoder channels after the input conv (doubled by every down block)."""
    decoder_channels: int = 256
    """decoder channels before the first up block (halved by each)."""
    strides: tuple[int, ...] = (2, 4, 6, 10)
    """downsampling factors; their product is the hop (samples per latent frame)."""
    dilations: tuple[int, ...] = (1, 3, 9)
    """dilations of the residual units in every block."""
    latent_dim: int = 128
    """width of the latent frames (and the transformer)."""
    transformer_layers: int = 2
    """layers of the RoPE transformer at the latent rate (0: none)."""
    transformer_heads: int = 4
    """attention heads of the RoPE transformer at the latent rate."""
    window: int | None = None
    """limits attention to that many past frames (streaming-friendly), None = full."""
    causal: bool = False
    """causal convs and attention (streaming)."""
    weight_norm: bool = True
    """weight-normalised convs (as DAC)."""
    dtype: str | None = None
    """compute dtype of the convs and the transformer ("bfloat16"; None: float32)."""

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    """The quantizer between the encoder and the decoder."""

    kind: QuantizerKind = "phoneme_bsq"
    """``phoneme_bsq`` (a phoneme VQ trained with CTC, then BSQ on the residual) or a baseline."""
    phoneme_vocab: int = 0
    """stage-1 codebook size = the phoneme vocabulary with the CTC blank (0: the data's)."""
    vq_dim: int = 8
    """factorised (low-dim, l2-normalised) code dimension of the ``vq`` / ``rvq`` codebooks."""
    phoneme_vq_dim: int = 32
    """``phoneme_bsq``: code dimension of the stage-1 codebook, whose cosine similarities
    are the CTC logits. 32, not DAC's 8: in 8 dimensions the ~70 codes crowd together
    and CTC stalled above the uniform loss (BENCHMARKS.md, 2026-12-07)."""
    ema: bool = False
    """EMA updates of the VQ codebooks (``vq``, ``rvq``; ``phoneme_bsq`` refuses it)."""
    phoneme_shared_gradient: bool = False
    """``phoneme_bsq``: let the reconstruction and adversarial gradients reach the stage-1
    code selection too (plain straight-through); the design's default trains stage 1 by
    the phoneme loss alone."""
    phoneme_logit_scale: float = 10.0
    """``phoneme_bsq``: initial scale of the stage-1 cosine-similarity logits (learned)."""
    dead_code_threshold: float = 0.0
    """restart codes used less than this (EMA count) from random latents of the batch (0: never)."""
    num_bits: int = 16
    """BSQ: bits per code."""
    group_size: int = 8
    """BSQ: the entropy penalty is factorised over groups of this many bits."""
    gamma: float = 1.0
    """BSQ: weight of the entropy penalty's codebook term."""
    inv_temperature: float = 100.0
    """BSQ: inverse temperature of the soft code probabilities in the entropy penalty, as
    BSQ-ViT's ``inv_temperature`` (its training scripts use 100). At 1 the assignment of
    12 bits is nearly uniform whatever the codes, the penalty has no grip, and the
    codes collapsed to one in 40 steps of the ``cpu`` recipe (group perplexity 41 -> 1.5)."""
    codebook_size: int = 1024
    """``vq`` and ``rvq``: entries per codebook."""
    num_quantizers: int = 4
    """``rvq``: number of residual levels."""
    rvq_dropout: float = 0.5
    """``rvq``: quantizer dropout (trains every prefix of the levels, for variable bitrate)."""
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    """levels per FSQ dimension (codebook = their product)."""


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the generator's losses (DAC's ``lambdas`` for the shared ones)."""

    mel: float = 15.0
    """multi-scale log-mel L1 (DAC: 15)."""
    mel_n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    """FFT sizes of the mel loss's scales."""
    mel_n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    """mel bands of the mel loss's scales (one per ``mel_n_ffts`` entry)."""
    stft: float = 0.0
    """multi-resolution STFT loss (spectral convergence + log magnitude)."""
    waveform: float = 0.0
    """waveform L1."""
    commitment: float = 0.25
    """weight of the quantizer losses named ``*_commitment`` (``vq_commitment``, ...)."""
    codebook: float = 1.0
    """weight of the quantizer losses named ``*_codebook`` (``vq_codebook``, ...)."""
    entropy: float = 0.1
    """weight of the quantizer losses named ``*_entropy`` (``bsq_entropy``, ...)."""
    ctc: float = 1.0
    """CTC loss of the stage-1 phoneme codes (phoneme_bsq only; skipped without phonemes)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training audio comes from and how it is batched."""

    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    """the dataset (``--data.source.kind corpus|folder|ljspeech|libritts|common_voice|hf``,
    ``--data.source.path``); the default is the embedded espeak corpus, built on first
    use into the cache (``$TRC_CACHE_DIR``, ``~/.cache/trc``)."""
    train_split: str = "train"
    """name of the training split."""
    eval_split: str = "validation"
    """name of the evaluation split."""
    phoneme_vocab: str = ""
    """``Vocab`` of phonemes for CTC. Empty: the corpus's ``phoneme_vocab.json``; for other
    sources, the symbols of the training split's transcripts phonemized by espeak-ng, saved
    as ``RUN/phoneme_vocab.json`` (``tokenizer.alpha.data``); with
    ``--quantizer.phoneme-vocab N`` and no file, stage 1 trains without CTC."""
    batch_size: int = 8
    """the global batch (split over processes)."""
    max_seconds: float = 4.0
    """the longest batch; longer utterances are cropped to a random window of it, with no
    CTC target (their transcript no longer matches)."""
    bucket_seconds: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    """bucket boundaries (each batch pads to the next: few shapes to jit)."""
    max_tokens: int | None = None
    """phoneme length of every batch, longer transcripts skipped (None: ``max_seconds`` x 40/s)."""
    workers: int = 0
    """grain worker processes (0: decode in the main process)."""
    loudness_dbfs: float | None = -20.0
    """RMS loudness target (None: as recorded)."""


@dataclasses.dataclass(frozen=True)
class AlphaConfig:
    sample_rate: int = 24000
    """audio rate in Hz; a multiple of the hop (the product of ``codec.strides``)."""
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
    """The default run: a few minutes on a 2-core CPU, corpus and compiling included.

    The architecture is the full one, only narrower. One bucket of 4 s (one compile of
    the step), 60 steps of reconstruction and CTC; it evaluates before the first step
    and after the last (``eval_at_start``), so the curve, the logged audio and the
    spectrograms show the codec before and after. The discriminator starts after the
    run (``--gan.disc-start-step 30`` turns it on half-way: the step then also runs and
    compiles the discriminators, about twice the time); the ``cpu`` preset is the
    recipe that learns for real."""
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
        gan=GANConfig(disc_start_step=steps + 1),
        disc_optim=dac_adamw(1e-3, 0),
        data=DataConfig(batch_size=4, max_seconds=4.0, bucket_seconds=(4.0,)),
        train=TrainConfig(steps=steps, eval_every=steps, eval_batches=2, eval_at_start=True,
                          optim=dac_adamw(1e-3, 5),
                          checkpoint=CheckpointConfig(every=30),
                          logging=LoggingConfig(log_every=10, audio_every=steps)),
    )


def cpu() -> AlphaConfig:
    """The CPU learning recipe: 1700 steps, about an hour on 2 cores (~1.9 s a step),
    on a 2 h espeak corpus. Its curve and eval table are in BENCHMARKS.md: validation
    PER 0.53, STOI 0.70, PESQ-WB 1.10 at 906 bit/s (1000 steps gave 0.66 / 0.61 / 1.08).

    What it changes from ``tiny``, and why (experiments in BENCHMARKS.md):

    - (as every preset now) stage-1 codes in 32 dimensions (``phoneme_vq_dim``);
    - ``ctc`` weight 5: the encoder serves both the phoneme stage and the residual,
      and the mel term (weight 15) would otherwise take it over;
    - a wider decoder (64 channels at the latent rate, 4 at the audio rate, where
      ``tiny`` has 2) and encoder (8 channels) and a 64-wide latent with 2 transformer
      layers; 12 BSQ bits: 50 Hz x (log2 69 + 12) = 905 bit/s, under 1 kbit/s;
    - the corpus grows to 2 h (1 608 training utterances instead of 218; it builds in
      ~1 min), utterances over 4 s are cropped (no CTC target) rather than dropped;
    - reconstruction and CTC only: the discriminator starts after the run
      (``gan.disc_start_step``); adversarial training pays off later than an hour of
      CPU, and until it starts the step does not run the discriminator at all.
    """
    steps = 1700
    return AlphaConfig(
        sample_rate=24000,
        codec=ConvStackConfig(channels=8, decoder_channels=64, strides=(2, 4, 6, 10),
                              dilations=(1, 3, 9), latent_dim=64, transformer_layers=2,
                              transformer_heads=4),
        quantizer=QuantizerConfig(num_bits=12, group_size=6),
        disc=DiscriminatorConfig(periods=(2, 3, 5), mpd_channels=(4, 8), msd_scales=2,
                                 msd_channels=(4, 8), stft_ffts=(512,), stft_channels=4,
                                 stft_bands=((0.0, 0.25), (0.25, 0.5), (0.5, 1.0))),
        loss=LossConfig(mel_n_ffts=(64, 256, 1024, 2048), mel_n_mels=(10, 40, 80, 160),
                        ctc=5.0),
        gan=GANConfig(disc_start_step=steps + 1),
        disc_optim=dac_adamw(1e-3, 0),
        data=DataConfig(source=SourceConfig(corpus_hours=2.0), batch_size=4,
                        max_seconds=4.0, bucket_seconds=(2.0, 4.0)),
        train=TrainConfig(steps=steps, eval_every=100, eval_batches=4, eval_at_start=True,
                          optim=dac_adamw(1e-3, 50),
                          checkpoint=CheckpointConfig(every=200),
                          logging=LoggingConfig(log_every=20, audio_every=400)),
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


def hq48k() -> AlphaConfig:
    """48 kHz audio at 50 Hz frames: ``small`` with the hop doubled to 960 samples
    (strides 2 x 6 x 8 x 10; DAC's 44 kHz model hops 512), so the codes keep ``small``'s
    rate and bitrate while the decoder reaches 24 kHz bandwidth. The embedded corpus is
    espeak speech (nothing above ~11 kHz): train it on 48 kHz recordings
    (``--data.source.kind folder --data.source.path DIR``)."""
    cfg = small()
    return dataclasses.replace(
        cfg, sample_rate=48000,
        codec=dataclasses.replace(cfg.codec, strides=(2, 6, 8, 10)))


PRESETS = {"tiny": tiny(), "cpu": cpu(), "small": small(), "base": base(),
           "hq48k": hq48k()}
