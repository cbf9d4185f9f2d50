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
from common.data.sources import open_source
from worldmodel.audio.speaker.config import SpeakerEncoderConfig

log = logging.getLogger(__name__)


def _records(source) -> list[dict]:
    return [source[i] for i in range(len(source))]


def _speakers_of(records: list[dict], where: str) -> list[str]:
    missing = [r["id"] for r in records if not r.get("speaker")]
    if missing:
        raise ValueError(f"{where}: {len(missing)} utterances have no speaker label "
                         f"(e.g. {missing[:3]}); the speaker encoder needs one per record")
    return sorted({str(r["speaker"]) for r in records})


def resolve_data(cfg: SpeakerEncoderConfig) -> SpeakerEncoderConfig:
    """The config with the corpus path and the speaker table filled in."""
    data = cfg.data
    source = dataclasses.replace(data.source, corpus_sample_rate=cfg.features.sample_rate)
    if source.kind == "corpus" and not source.path:
        from common.data.corpus import default_corpus

        root = default_corpus(sample_rate=cfg.features.sample_rate, hours=source.corpus_hours,
                              holdout_speakers=source.corpus_holdout_speakers)
        source = dataclasses.replace(source, path=str(root))
    speakers = data.speakers
    if not speakers:
        train = open_source(source, data.train_split)
        speakers = tuple(_speakers_of(_records(train), f"{source.path} {data.train_split}"))
        log.info("speaker table: %d speakers from %s split %r", len(speakers),
                 source.path or source.kind, data.train_split)
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
    data, table = cfg.data, set(cfg.data.speakers)
    train = [r for r in _records(open_source(data.source, data.train_split))
             if str(r.get("speaker")) in table]
    evals = _records(open_source(data.source, data.eval_split))
    known = [r for r in evals if str(r.get("speaker")) in table]
    log.info("data: %d train utterances; %d of %d %s utterances by the %d table speakers",
             len(train), len(known), len(evals), data.eval_split, len(table))
    if not train:
        raise ValueError(f"{data.source.path or data.source.kind}: no training utterance of "
                         f"the {len(table)} speakers in data.speakers")
    pcfg = pipeline_config(cfg)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    train_source = RecordSource(train, f"{data.train_split}:speakers")
    eval_source = RecordSource(known, f"{data.eval_split}:seen-speakers")
    return make_pipeline(train_source, pcfg), lambda: iterate_eval(eval_source, eval_cfg)
