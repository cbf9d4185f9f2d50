"""Audio to SNAC tokens and back: ``python -m tokenizer.snac.infer encode|decode|roundtrip``.

    python -m tokenizer.snac.infer encode speech.wav tokens/ --run runs/snac24-converted
    python -m tokenizer.snac.infer decode tokens/ decoded/ --run runs/snac24-converted
    python -m tokenizer.snac.infer roundtrip corpus/ recon/ --parity

INPUT is a file or a folder (searched recursively; outputs mirror it under OUTPUT);
``--run`` defaults to the newest SNAC run under ``runs/`` (a trained run or a converted
model). A ``.npz`` holds one code array per level (``codes_0`` coarse ... ), the strides,
sample count and the model's config hash (``tokenizer.snac.inference.SnacTokenFile``).
Files are padded to the model's pad multiple (2048 samples at 24 kHz), rounded up to
buckets of about ``--bucket-seconds`` (fewer compiles); a model call holds at most
``--batch-size`` files and ``--max-batch-seconds`` of padded audio, and a file too long
for the free memory in one call is skipped, named, with what it needs (a single file:
an error). ``--parity`` encodes exactly as the PyTorch package's ``SNAC.encode``
(identical codes): padding to the pad multiple alone and no loudness change (a
converted published model never changes loudness: it was trained on audio as
recorded; a run trained here normalises to its training level unless
``--no-loudness``). Bad files (the shared policy, ``common.data.bad_input``: missing,
unreadable, empty, NaN/Inf, truncated, silent, too short) stop a single-file run; in a
folder they are skipped, named with the reason and counted (``--strict``: stop). A
roundtrip writes each file at its input's sample rate (``--output-rate``: one for
all). Exits 1 when no file was written.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Annotated

from common.console import setup_console
from tokenizer.codec.cli import (
    FileArgs,
    Flat,
    RunArgs,
    exit_with,
    parse_codec_command,
    print_summary,
)

PROG = "python -m tokenizer.snac.infer"


@dataclasses.dataclass(frozen=True)
class SnacInferArgs:
    """The flags of ``encode|decode|roundtrip``."""

    files: Annotated[FileArgs, Flat]
    run: Annotated[RunArgs, Flat] = dataclasses.field(default_factory=RunArgs)
    bucket_seconds: float = 1.0
    """pad lengths up to buckets of about this many seconds (0: the pad multiple alone)"""
    max_batch_seconds: float = 32.0
    """padded audio per model call (longer files go one at a time; 0: no cap)"""
    parity: bool = False
    """the PyTorch package's padding and no loudness change: its exact codes"""


def run(args: SnacInferArgs) -> dict:
    """Carry out one command; returns ``{written, skipped, run_dir, step}``."""
    from tokenizer.codec.file_commands import codec_command
    from tokenizer.snac.inference import SnacTokenizer

    extra = {} if args.files.loudness else {"loudness_dbfs": None}
    tok = SnacTokenizer.from_run(args.run.run, step=args.run.step, command=PROG,
                                 batch_size=args.files.batch_size,
                                 bucket_seconds=args.bucket_seconds,
                                 max_batch_seconds=args.max_batch_seconds,
                                 parity=args.parity, **extra)
    return codec_command(args.command, args.files.input, args.files.output, tok,
                         strict=args.files.strict, keep_truncated=args.files.keep_truncated,
                         output_rate=args.files.output_rate)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_codec_command(SnacInferArgs, argv, prog=PROG, description=__doc__)
    setup_console(args.run.verbose)
    result = run(args)
    print_summary(args.command, args.files.output, result, "SNAC")
    return result


if __name__ == "__main__":
    exit_with(lambda: len(main(sys.argv[1:])["written"]))
