"""How SNAC codes look to a language model: ``python -m tokenizer.snac.tokens INPUT``.

    python -m tokenizer.snac.tokens tokens/                       # .npz from snac.infer
    python -m tokenizer.snac.tokens speech/ --run runs/snac24-converted --limit 200
    python -m tokenizer.snac.tokens corpus --merges 500 --json stats.json

INPUT is a folder searched recursively for token files (``.npz`` of
``tokenizer.snac.inference.SnacTokenFile``), or else for audio files, which are encoded
with the codec of ``--run`` (default: the newest SNAC run under ``runs/``) first; or the
word ``corpus``: the train split of the embedded espeak corpus at the codec's rate.
Prints one row per level and for the flattened (depth-first per coarse frame) stream:
codebook usage, entropy, Gini, bigram statistics, repetition and BPE compression
(definitions in ``tokenizer.snac.token_stats``), then a recommendation. Unreadable files
are skipped, named and counted (``--strict``: stop at the first). Exits 1 when no input
could be read.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import tyro

from common.console import setup_console
from tokenizer.codec.cli import Flat, RunArgs, UsageError, exit_with, parse

PROG = "python -m tokenizer.snac.tokens"


@dataclasses.dataclass(frozen=True)
class TokensArgs:
    """The flags of ``python -m tokenizer.snac.tokens``."""

    input: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="INPUT")]
    """a folder of .npz token files or of audio, or 'corpus'"""
    run: Annotated[RunArgs, Flat] = dataclasses.field(default_factory=RunArgs)
    merges: int = 1000
    """BPE merges to simulate (0: no BPE)"""
    json: str | None = None
    """also write the full report to this file"""
    counts: bool = False
    """include per-code counts in the JSON report"""
    limit: int | None = None
    """use the first N files only"""
    top_k: int = 10
    """most frequent codes to list"""
    batch_size: int = 8
    """encoding batch size"""
    corpus_hours: float = 0.25
    """size of the embedded corpus to build for INPUT 'corpus'"""
    strict: bool = False
    """stop at the first unreadable file instead of skipping it"""


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(TokensArgs, argv, prog=PROG, description=__doc__)
    if args.merges < 0 or (args.limit is not None and args.limit < 1):
        raise UsageError("--merges must be >= 0 and --limit >= 1")
    setup_console(args.run.verbose)
    from tokenizer.snac.token_inputs import analyse_inputs
    from tokenizer.snac.token_stats import recommendation

    result = analyse_inputs(args)
    report = result["report"]
    skipped = result["skipped"]
    print(f"{report.files} files, {report.frames} frames, strides {report.strides}, "
          f"codebook {report.codebook_size}"
          + (f"; skipped {len(skipped)} unreadable: " + "; ".join(skipped) if skipped else ""))
    print(report.format_table())
    print("\n" + recommendation(report), flush=True)
    if args.json:
        out = {**report.to_dict(counts=args.counts), "input": args.input,
               "run_dir": result["run_dir"], "step": result["step"], "skipped": skipped}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    exit_with(lambda: main(sys.argv[1:])["report"].files)
