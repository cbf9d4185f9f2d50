"""Data helpers shared by the world model's audio trainers: the default corpus at the
front end's rate, a split's records, and the speaker table."""

from __future__ import annotations

import dataclasses
import logging

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


def split_records(source: SourceConfig, split: str) -> list[dict]:
    data = open_source(source, split)
    return [data[i] for i in range(len(data))]


def speaker_table(source: SourceConfig, split: str) -> tuple[str, ...]:
    """The split's speakers, sorted; every record must name one."""
    records = split_records(source, split)
    missing = [r["id"] for r in records if not r.get("speaker")]
    if missing:
        raise ValueError(f"{source.path or source.kind} {split}: {len(missing)} utterances "
                         f"have no speaker label (e.g. {missing[:3]}); this model needs one "
                         f"per record")
    table = tuple(sorted({str(r["speaker"]) for r in records}))
    log.info("speaker table: %d speakers from %s split %r", len(table),
             source.path or source.kind, split)
    if len(table) < 2:
        raise ValueError(f"data.speakers: at least 2 speakers are needed, got {len(table)}")
    return table


def records_of_speakers(source: SourceConfig, split: str, table: tuple[str, ...]
                        ) -> tuple[list[dict], int]:
    """``(records of the table's speakers, how many the split has in all)``."""
    records = split_records(source, split)
    keep = set(table)
    return [r for r in records if str(r.get("speaker")) in keep], len(records)
