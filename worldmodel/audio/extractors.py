"""Preprocessing extractors from trained runs: SIVE's content features, the speaker
encoder's embedding and the audio CVAE's latents per utterance, for ``python -m
common.data.preprocess`` (``common.data.features``' plug-ins, named by module path)::

    python -m common.data.preprocess ... \\
        --extractors logmel f0 worldmodel.audio.extractors:sive_features \\
            worldmodel.audio.extractors:speaker_embedding \\
        --extractor-arg sive_features.run=runs/sive --extractor-arg speaker_embedding.run=runs/spk

``run`` empty: the newest run of that kind under ``runs/``. Each utterance is
loudness-normalised as the run's training data was, left-padded to whole steps of 4
hops (the grid the trainers' batches use, so the frames are those a training batch
would give) and then to a multiple of ``pad_seconds``, which bounds how many shapes the
jitted encoder compiles for; ``--worker-id/--num-workers`` shard the work as for the
other extractors.

  sive_features      ``sive_features`` float32 ``[T4, dim]``, ``T4 = ceil(ceil(T / 2) / 2)``
                     for ``T = 1 + N // hop`` mel frames of the 4-hop-padded audio
  speaker_embedding  ``speaker_embedding`` float32 ``[embed_dim]`` (unnormalised, as the
                     encoder gives it)
  cvae_latents       ``cvae_latents`` float32 ``[T4, 2 Z]``: an audio CVAE run's posterior
                     mean and log-variance per latent frame (``T4`` as SIVE's), what
                     audio diffusion learns
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.data.batching import round_up
from common.data.features import ExtractorError, Spec
from common.data.transforms import normalize_loudness

SUBSAMPLING = 4


class _RunExtractor:
    """An encoder from a run, run over one left-padded utterance at a time."""

    name = ""
    kind = ""
    model = ""  # the worldmodel.train subcommand that makes such runs

    def __init__(self, run: str, pad_seconds: float):
        from common.train.runs import pick_run

        if pad_seconds <= 0:
            raise ValueError(f"pad_seconds must be > 0, got {pad_seconds}")
        self.run = pick_run(run, self.kind, f"common.data.preprocess {self.name}",
                            flag=f"--extractor-arg {self.name}.run=",
                            train_command=f"python -m worldmodel.train {self.model}")
        self.features, self.loudness_dbfs, self._apply = self._load(self.run)
        self.sample_rate = self.features.sample_rate
        self.step = SUBSAMPLING * self.features.hop_length
        self.pad = round_up(math.ceil(pad_seconds * self.sample_rate), self.step)

    def _load(self, run: Path) -> tuple[Any, float | None, Callable]:
        """``(mel features, the run's loudness target, apply(audio [1, N], lengths))``."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"run": str(self.run), "hop_length": self.features.hop_length,
                "sample_rate": self.sample_rate}

    def _encode(self, rec: Mapping[str, Any]):
        if rec.get("sample_rate") != self.sample_rate:
            raise ExtractorError(f"extractor {self.name!r} on {rec.get('id')}: audio at "
                                 f"{rec.get('sample_rate')} Hz, expected {self.sample_rate}")
        wav = np.asarray(rec["audio"], np.float32)
        if self.loudness_dbfs is not None:  # as the run's training batches were
            wav = normalize_loudness(wav, self.loudness_dbfs)
        n = wav.shape[0]
        grid = round_up(max(n, 1), self.step)  # the 4-hop grid of a training batch
        total = round_up(grid, self.pad)
        audio = np.zeros((1, total), np.float32)
        audio[0, total - n:] = wav
        return self._apply(audio, np.asarray([n], np.int32))


class SiveFeatures(_RunExtractor):
    name = "sive_features"
    kind = "worldmodel.sive"
    model = "audio-sive"

    def _load(self, run):
        import jax
        from flax import nnx

        from common.config import config_from_dict
        from common.speech.features import log_mel_frames
        from common.train.checkpoint import load_model
        from worldmodel.audio.sive.config import SiveConfig
        from worldmodel.audio.sive.model import Sive

        def build(d):
            c = config_from_dict(SiveConfig, d)
            return Sive(c.encoder, c.adversary, len(c.data.speakers), rngs=nnx.Rngs(0))

        model, d = load_model(run, build)
        cfg = config_from_dict(SiveConfig, d)
        self.dim = cfg.encoder.dim
        encoder = model.encoder
        encoder.eval()
        graphdef, state = nnx.split(encoder)

        @jax.jit
        def apply(audio, lengths):
            mel, valid = log_mel_frames(cfg.features, audio, lengths)
            out = nnx.merge(graphdef, state)(mel, valid)
            return out.features, out.valid

        return cfg.features, cfg.data.loudness_dbfs, apply

    def spec(self) -> Spec:
        return {"sive_features": ((None, self.dim), "float32")}

    def __call__(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        features, valid = self._encode(rec)
        return {"sive_features": np.asarray(features[0])[np.asarray(valid[0])]}


class SpeakerEmbedding(_RunExtractor):
    name = "speaker_embedding"
    kind = "worldmodel.speaker_encoder"
    model = "speaker-encoder"

    def _load(self, run):
        import jax
        from flax import nnx

        from common.config import config_from_dict
        from common.speech.features import log_mel_frames
        from common.train.checkpoint import load_model
        from worldmodel.audio.speaker.config import SpeakerEncoderConfig
        from worldmodel.audio.speaker.training import SpeakerClassifier

        model, d = load_model(run, lambda d: SpeakerClassifier(
            config_from_dict(SpeakerEncoderConfig, d), rngs=nnx.Rngs(0)))
        cfg = config_from_dict(SpeakerEncoderConfig, d)
        self.dim = cfg.model.embed_dim
        encoder = model.encoder
        encoder.eval()
        graphdef, state = nnx.split(encoder)

        @jax.jit
        def apply(audio, lengths):
            mel, valid = log_mel_frames(cfg.features, audio, lengths)
            return nnx.merge(graphdef, state)(mel, valid)

        return cfg.features, cfg.data.loudness_dbfs, apply

    def spec(self) -> Spec:
        return {"speaker_embedding": ((self.dim,), "float32")}

    def __call__(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        return {"speaker_embedding": np.asarray(self._encode(rec)[0], np.float32)}


class CvaeLatents(_RunExtractor):
    """The audio CVAE's posterior per latent frame, for latent diffusion
    (``worldmodel.train audio-diffusion --precomputed``): the CVAE run's frozen SIVE and
    speaker encoders give the content and speaker its encoder does not read, so only the
    mel enters; stored as ``cvae_latents [T4, 2 Z]``, the mean then the log-variance."""

    name = "cvae_latents"
    kind = "worldmodel.cvae"
    model = "audio-cvae"

    def _load(self, run):
        import jax
        from flax import nnx

        from common.config import config_from_dict
        from common.speech.features import log_mel_frames
        from common.train.checkpoint import load_model
        from worldmodel.audio.cvae.config import CvaeConfig
        from worldmodel.audio.cvae.training import CvaeTrainee

        model, d = load_model(run, lambda d: CvaeTrainee(config_from_dict(CvaeConfig, d),
                                                         rngs=nnx.Rngs(0)))
        cfg = config_from_dict(CvaeConfig, d)
        self.dim = 2 * cfg.model.latent_dim
        cvae = model.cvae
        cvae.eval()
        graphdef, state = nnx.split(cvae)

        @jax.jit
        def apply(audio, lengths):
            mel, valid = log_mel_frames(cfg.features, audio, lengths)
            mean, logvar, v4 = nnx.merge(graphdef, state).encode(mel, valid)
            return jax.numpy.concatenate([mean, logvar], axis=-1), v4

        return cfg.features, cfg.data.loudness_dbfs, apply

    def spec(self) -> Spec:
        return {"cvae_latents": ((None, self.dim), "float32")}

    def __call__(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        latents, valid = self._encode(rec)
        return {"cvae_latents": np.asarray(latents[0])[np.asarray(valid[0])]}


def cvae_latents(run: str = "", pad_seconds: float = 1.0) -> CvaeLatents:
    """The audio CVAE's posterior (mean, log-variance) of a run (see ``CvaeLatents``)."""
    return CvaeLatents(run, pad_seconds)


def sive_features(run: str = "", pad_seconds: float = 1.0) -> SiveFeatures:
    """SIVE's content features of a run (see the module docstring)."""
    return SiveFeatures(run, pad_seconds)


def speaker_embedding(run: str = "", pad_seconds: float = 1.0) -> SpeakerEmbedding:
    """The speaker encoder's embedding of a run (see the module docstring)."""
    return SpeakerEmbedding(run, pad_seconds)
