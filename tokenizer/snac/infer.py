"""Audio to SNAC tokens and back: ``python -m tokenizer.snac.infer encode|decode|roundtrip``.

    python -m tokenizer.snac.infer encode speech.wav tokens/ --run runs/snac24-converted
    python -m tokenizer.snac.infer decode tokens/ decoded/ --run runs/snac24-converted
    python -m tokenizer.snac.infer roundtrip corpus/ recon/ --bucket-seconds 0

INPUT is a file or a folder (searched recursively; outputs mirror it under OUTPUT);
``--run`` defaults to the newest run under ``runs/`` (a trained run or a converted
model). A ``.npz`` holds one code array per level (``codes_0`` coarse ... ), the strides,
sample count and the model's config hash (``tokenizer.snac.inference.SnacTokenFile``).
``--bucket-seconds 0`` pads each file exactly as the PyTorch package (identical codes),
otherwise lengths round up to the bucket (fewer compiles). Unreadable files stop a
single-file run; in a folder they are skipped, named and counted (``--strict``: stop).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tokenizer.codec.cli import (
    CLI_ERRORS,
    add_codec_args,
    codec_command,
    print_summary,
    setup_cli_logging,
)
from tokenizer.snac.inference import SnacTokenizer


def run(args: argparse.Namespace) -> dict:
    """Carry out one command; returns ``{written, skipped, run_dir, step}``."""
    extra = {"loudness_dbfs": None} if args.no_loudness else {}
    tok = SnacTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size,
                                 bucket_seconds=args.bucket_seconds, **extra)
    return codec_command(args, tok)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tokenizer.snac.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_codec_args(p)
    p.add_argument("--bucket-seconds", type=float, default=1.0,
                   help="pad lengths up to a multiple of this (0: exactly as PyTorch SNAC)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    setup_cli_logging()
    args = parser().parse_args(argv)
    result = run(args)
    print_summary(args, result, "SNAC")
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CLI_ERRORS as e:
        sys.exit(f"error: {e}")
