"""Evaluate a trained alpha codec on held-out speech: ``python -m tokenizer.alpha.eval``.

    python -m tokenizer.alpha.eval                          # newest run, its eval split
    python -m tokenizer.alpha.eval --run runs/X --split test --max-utterances 200
    python -m tokenizer.alpha.eval --source-kind folder --source-path DIR --split ""

Reconstructs every utterance and reports mel and STFT distances, SI-SDR, PESQ and STOI,
the bitrate, per code stream the codebook usage and perplexity, and the phoneme
accuracy of the stage-1 codes (``tokenizer.alpha.evaluation``). Plain audio (a folder
without transcripts) gets the reconstruction metrics, and a note says why phoneme
accuracy is missing. ``--split ""`` evaluates the whole source; another source given
without ``--split`` is evaluated whole when it lacks the run's eval split. A split
smaller than ``--batch-size`` is fine (the last batch is padded and masked). Broken
files are skipped and counted by reason, as in training. Prints a table and writes
JSON (default ``RUN/eval/step<N>-<split>.json``). Exits 1 when no utterance was
evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from common.console import setup_console
from tokenizer.codec.cli import Flat, RunArgs, UsageError, exit_with, parse

PROG = "python -m tokenizer.alpha.eval"


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """The flags of ``python -m tokenizer.alpha.eval``."""

    run: Annotated[RunArgs, Flat] = dataclasses.field(default_factory=RunArgs)
    split: str | None = None
    """split to evaluate (default: the run's eval split; "" for all of the source)"""
    source_kind: str | None = None
    """evaluate another source: corpus, folder, ljspeech, libritts, ..."""
    source_path: str | None = None
    """that source's path (a folder, or a dataset directory)"""
    batch_size: int = 8
    """utterances per model call (a smaller split is padded, not refused)"""
    max_seconds: float = 20.0
    """longer utterances are skipped (counted in the log)"""
    max_utterances: int | None = None
    """evaluate the first N utterances only"""
    perceptual: bool = True
    """score PESQ and STOI (--no-perceptual: skip them)"""
    json: str | None = None
    """report path (default RUN/eval/step<N>-<split>.json)"""


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(EvalArgs, argv, prog=PROG, description=__doc__)
    setup_console(args.run.verbose)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    from tokenizer.alpha.evaluation import eval_config, evaluate, open_eval_source, print_report
    from tokenizer.alpha.inference import AlphaTokenizer

    tok = AlphaTokenizer.from_run(args.run.run, step=args.run.step, command=PROG)
    cfg, vocab = eval_config(tok.cfg, kind=args.source_kind, path=args.source_path,
                             batch_size=args.batch_size, max_seconds=args.max_seconds)
    other_source = bool(args.source_kind or args.source_path)
    source, split = open_eval_source(
        cfg.data.source, cfg.data.eval_split if args.split is None else args.split,
        or_all=args.split is None and other_source)
    report = evaluate(tok, cfg, split=split, vocab=vocab, max_utterances=args.max_utterances,
                      perceptual=args.perceptual, source=source)
    report = {"run_dir": str(tok.run_dir), "step": tok.step, "split": split,
              "source": cfg.data.source.path or cfg.data.source.kind, **report}
    path = Path(args.json) if args.json else (
        Path(tok.run_dir) / "eval" / f"step{tok.step}-{split or 'all'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print_report(report, f"alpha codec eval: {tok.run_dir} step {tok.step}, split {split!r}")
    print(f"report: {path}", flush=True)
    return report


if __name__ == "__main__":
    exit_with(lambda: main(sys.argv[1:])["utterances"])
