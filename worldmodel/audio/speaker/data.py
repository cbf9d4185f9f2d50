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
import logging
from collections.abc import Callable, Iterator

from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.source_base import RecordSource
from worldmodel.audio.data import records_of_speakers, resolve_source, speaker_table
from worldmodel.audio.speaker.config import SpeakerEncoderConfig

log = logging.getLogger(__name__)


def resolve_data(cfg: SpeakerEncoderConfig) -> SpeakerEncoderConfig:
    """The config with the corpus path and the speaker table filled in."""
    data = cfg.data
    source = resolve_source(data.source, cfg.features.sample_rate)
    speakers = data.speakers or speaker_table(source, data.train_split)
    if len(speakers) < 2:
        raise ValueError(f"data.speakers: the speaker encoder needs at least 2 speakers, "
                         f"got {len(speakers)}")
    return dataclasses.replace(cfg, data=dataclasses.replace(data, source=source,
                                                             speakers=tuple(speakers)))


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
    train, _ = records_of_speakers(data.source, data.train_split, data.speakers)
    known, total = records_of_speakers(data.source, data.eval_split, data.speakers)
    log.info("data: %d train utterances; %d of %d %s utterances by the %d table speakers",
             len(train), len(known), total, data.eval_split, len(data.speakers))
    if not train:
        raise ValueError(f"{data.source.path or data.source.kind}: no training utterance of "
                         f"the {len(data.speakers)} speakers in data.speakers")
    pcfg = pipeline_config(cfg)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    train_source = RecordSource(train, f"{data.train_split}:speakers")
    eval_source = RecordSource(known, f"{data.eval_split}:seen-speakers")
    return make_pipeline(train_source, pcfg), lambda: iterate_eval(eval_source, eval_cfg)
