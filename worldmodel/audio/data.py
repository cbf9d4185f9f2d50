"""Data helpers shared by the world model's audio trainers: the default corpus at the
front end's rate, a split's records, and the speaker table."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator

from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.source_base import RecordSource
from common.data.sources import SourceConfig, open_source

log = logging.getLogger(__name__)


def resolve_source(source: SourceConfig, sample_rate: int) -> SourceConfig:
    """``source`` with the default corpus built (first use) at ``sample_rate`` and its
    path filled in."""
    source = dataclasses.replace(source, corpus_sample_rate=sample_rate)
    if source.kind == "corpus" and not source.path:
        from common.data.corpus import default_corpus

        root = default_corpus(sample_rate=sample_rate, hours=source.corpus_hours,
                              holdout_speakers=source.corpus_holdout_speakers)
        source = dataclasses.replace(source, path=str(root))
    return source


def precomputed_shards(path, made_by: dict[str, tuple[str, str]], sample_rate: int,
                       user: str):
    """The shards under ``path`` (a ``ShardSource``), checked to hold each extractor of
    ``made_by`` (``name -> (run directory, the flag that names it)``) made from that
    run, at ``sample_rate``; ``user`` names who reads them in errors ("this CVAE")."""
    from pathlib import Path

    from common.data.records import DataError
    from common.data.shards import ShardSource

    source = ShardSource(Path(path))
    made = {e["name"]: e for e in source.index.get("extractors", [])}
    for name, (ours, flag) in made_by.items():
        if name not in made:
            raise DataError(
                f"{path}: no {name!r} in its shards (made with {sorted(made)}); write them "
                f"with `python -m common.data.preprocess --extractors "
                f"worldmodel.audio.extractors:{name} ...`")
        theirs = made[name].get("info", {}).get("run", "")
        if not theirs or Path(theirs).resolve() != Path(ours).resolve():
            raise DataError(f"{path}: its {name} come from the run {theirs or '(unknown)'}, "
                            f"but {user}'s {flag} is {ours}")
    rate = source.index.get("sample_rate")
    if rate != sample_rate:
        raise DataError(f"{path}: shards of {rate} Hz audio, but {user} reads "
                        f"{sample_rate} Hz")
    return source


def split_records(source: SourceConfig, split: str) -> list[dict]:
    data = open_source(source, split)
    return [data[i] for i in range(len(data))]


def speaker_table(source: SourceConfig, split: str, given: tuple[str, ...] = ()
                  ) -> tuple[str, ...]:
    """``given`` (the config's table), else the split's speakers, sorted (every record
    must name one); at least two either way."""
    if given:
        return _at_least_two(tuple(given))
    records = split_records(source, split)
    missing = [r["id"] for r in records if not r.get("speaker")]
    if missing:
        raise ValueError(f"{source.path or source.kind} {split}: {len(missing)} utterances "
                         f"have no speaker label (e.g. {missing[:3]}); this model needs one "
                         f"per record")
    table = tuple(sorted({str(r["speaker"]) for r in records}))
    log.info("speaker table: %d speakers from %s split %r", len(table),
             source.path or source.kind, split)
    return _at_least_two(table)


def _at_least_two(table: tuple[str, ...]) -> tuple[str, ...]:
    if len(table) < 2:
        raise ValueError(f"data.speakers: at least 2 speakers are needed, got {len(table)}")
    return table


def records_of_speakers(source: SourceConfig, split: str, table: tuple[str, ...]
                        ) -> tuple[list[dict], int]:
    """``(records of the table's speakers, how many the split has in all)``."""
    records = split_records(source, split)
    keep = set(table)
    return [r for r in records if str(r.get("speaker")) in keep], len(records)


def seen_speaker_data(source: SourceConfig, train_split: str, eval_split: str,
                      speakers: tuple[str, ...], pcfg: PipelineConfig
                      ) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` over the utterances of the table's
    speakers: training batches from ``train_split``, evaluation over ``eval_split``'s
    utterances by those speakers (the others are counted in the log, not scored: the
    classifier has no class for them)."""
    train, _ = records_of_speakers(source, train_split, speakers)
    known, total = records_of_speakers(source, eval_split, speakers)
    log.info("data: %d train utterances; %d of %d %s utterances by the %d table speakers",
             len(train), len(known), total, eval_split, len(speakers))
    if not train:
        raise ValueError(f"{source.path or source.kind}: no {train_split} utterance of the "
                         f"{len(speakers)} speakers in data.speakers")
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    return (make_pipeline(RecordSource(train, f"{train_split}:speakers"), pcfg),
            lambda: iterate_eval(RecordSource(known, f"{eval_split}:seen-speakers"),
                                 eval_cfg))


def utterance_data(source: SourceConfig, train_split: str, eval_split: str,
                   pcfg: PipelineConfig
                   ) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` over every utterance of the splits
    (no labels needed: the vocoder's data; ``seen_speaker_data`` is the labelled one)."""
    train = open_source(source, train_split)
    held = open_source(source, eval_split)
    log.info("data: %d %s / %d %s utterances", len(train), train_split, len(held),
             eval_split)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    return make_pipeline(train, pcfg), lambda: iterate_eval(held, eval_cfg)
