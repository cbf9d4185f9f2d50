"""The speaker encoder's data: fixed-length random crops of labelled utterances, each
with its index in the run's speaker table.

``resolve_data`` fixes what the data decides before the model is built: the corpus
(built on first use at the front end's sample rate) and the speaker table (the training
split's speakers, sorted; its size is the classifier's). Evaluation scores the eval
split's utterances of speakers in that table (identification accuracy); the others are
left out, counted in the log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from common.data.pipeline import PipelineConfig
from worldmodel.audio.data import resolve_source, seen_speaker_data, speaker_table
from worldmodel.audio.speaker.config import SpeakerEncoderConfig


def resolve_data(cfg: SpeakerEncoderConfig) -> SpeakerEncoderConfig:
    """The config with the corpus path and the speaker table filled in."""
    data = cfg.data
    source = resolve_source(data.source, cfg.features.sample_rate)
    speakers = speaker_table(source, data.train_split, data.speakers)
    return dataclasses.replace(cfg, data=dataclasses.replace(data, source=source,
                                                             speakers=speakers))


def pipeline_config(cfg: SpeakerEncoderConfig) -> PipelineConfig:
    data = cfg.data
    return PipelineConfig(
        sample_rate=cfg.features.sample_rate, batch_size=data.batch_size,
        segment_seconds=data.segment_seconds, max_seconds=data.segment_seconds,
        bucket_seconds=(data.segment_seconds,), frame_hops=(cfg.features.hop_length,),
        loudness_dbfs=data.loudness_dbfs, speakers=data.speakers, seed=cfg.train.seed,
        worker_count=data.workers, bad_input=data.source.bad_input)


def make_data(cfg: SpeakerEncoderConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config."""
    data = cfg.data
    return seen_speaker_data(data.source, data.train_split, data.eval_split, data.speakers,
                             pipeline_config(cfg))
