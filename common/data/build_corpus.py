"""``python -m common.data.build_corpus --out DIR [--hours H] [--sample-rate SR] ...``:
generate the embedded espeak-ng speech corpus (an HF audio-folder dataset) into DIR.

The command line only; the corpus itself is ``common.data.corpus``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.config import parse_config
from common.console import setup_console
from common.data.corpus import PRESETS, CorpusConfig, CorpusError, build_corpus, summary_line
from common.data.corpus_worker import ShardError


def main(argv: Sequence[str] | None = None) -> dict:
    setup_console()
    cfg = parse_config(CorpusConfig, PRESETS, argv, default_preset="default",
                       description="Generate the embedded espeak-ng speech corpus "
                                   "(an HF audio-folder dataset) into --out.")
    if cfg.out is None:
        print("error: --out DIR is required", file=sys.stderr)
        raise SystemExit(2)
    try:
        summary = build_corpus(cfg, progress=True)
    except (FileExistsError, CorpusError, ShardError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(summary_line(summary, cfg.out))
    return summary


if __name__ == "__main__":
    main()
