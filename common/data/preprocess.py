"""``python -m common.data.preprocess``: a speech source into ArrayRecord feature shards.

    python -m common.data.preprocess --output data/ljs --source.kind ljspeech \\
        --source.path /data/LJSpeech-1.1 --extractors logmel f0 text \\
        --extractor-arg logmel.n_mels=100 --worker-id 0 --num-workers 4

The command line only; sharding, resuming and the index are ``common.data.preprocessing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.config import config_to_dict, parse_config
from common.console import setup_console
from common.data import shards
from common.data.features import ExtractorError, build_extractors
from common.data.preprocessing import (
    PreprocessConfig,
    RunResult,
    finalize,
    preprocess,
    worker_slot,
)
from common.data.records import DataError
from common.data.sources import open_source


def main(argv: Sequence[str] | None = None) -> RunResult | dict[str, Any]:
    setup_console()
    cfg = parse_config(PreprocessConfig, {"default": PreprocessConfig()}, argv,
                       default_preset="default")
    if not cfg.output:
        raise SystemExit("preprocess: error: --output (the shard directory) is required")
    if cfg.finalize:
        index = finalize(cfg.output, require=True)
        print(f"preprocess: index of {index['count']} records in {len(index['shards'])} shards, "
              f"{index['skipped_total']} skipped, {index['seconds']:.1f} s of audio -> "
              f"{Path(cfg.output) / shards.INDEX_FILE}")
        return index
    worker_id, num_workers = worker_slot(cfg.worker_id, cfg.num_workers, cfg.distributed)
    source = open_source(cfg.source, cfg.split)
    if not hasattr(source, "__getitem__") or not hasattr(source, "__len__"):
        raise SystemExit(f"preprocess: source {source!r} is not random-access (a streamed "
                         "dataset?); shards need indices: use a non-streaming source")
    setups = build_extractors(cfg.extractors, cfg.extractor_arg,
                              defaults={"sample_rate": cfg.sample_rate})
    load_stats = getattr(source, "load_stats", None)
    info = {"name": repr(source), "split": cfg.split, "config": config_to_dict(cfg.source),
            "load_skipped": dict(load_stats.skipped) if load_stats is not None else {}}
    result = preprocess(source, cfg.output, setups, sample_rate=cfg.sample_rate,
                        shard_size=cfg.shard_size, worker_id=worker_id,
                        num_workers=num_workers, bad_input=cfg.source.bad_input,
                        source_info=info, threads=cfg.threads, progress=cfg.progress)
    print(result.summary())
    return result


def _cli() -> None:
    try:
        main()
    except (shards.ShardError, ExtractorError, DataError) as e:
        raise SystemExit(f"preprocess: error: {e}") from None


if __name__ == "__main__":
    _cli()
