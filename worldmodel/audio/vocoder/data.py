"""The vocoder's data: random fixed-length crops of any speech (shorter utterances
left-padded and masked), at the front end's sample rate. Batches are whole hops long, so
the mel frames of a left-padded row line up with its unpadded self when the pad is a
whole number of hops (every full-length row)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from common.data.pipeline import PipelineConfig
from worldmodel.audio.data import resolve_source, utterance_data
from worldmodel.audio.vocoder.config import VocoderConfig


def resolve_data(cfg: VocoderConfig) -> VocoderConfig:
    """The config with the corpus (built on first use at the front end's rate) filled in."""
    source = resolve_source(cfg.data.source, cfg.features.sample_rate)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=source))


def pipeline_config(cfg: VocoderConfig) -> PipelineConfig:
    data = cfg.data
    return PipelineConfig(
        sample_rate=cfg.features.sample_rate, batch_size=data.batch_size,
        segment_seconds=data.segment_seconds, max_seconds=data.segment_seconds,
        bucket_seconds=(data.segment_seconds,), frame_hops=(cfg.features.hop_length,),
        loudness_dbfs=data.loudness_dbfs, seed=cfg.train.seed, worker_count=data.workers,
        bad_input=data.source.bad_input)


def make_data(cfg: VocoderConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config."""
    data = cfg.data
    return utterance_data(data.source, data.train_split, data.eval_split,
                          pipeline_config(cfg))
