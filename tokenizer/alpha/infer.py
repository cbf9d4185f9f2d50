"""Audio to alpha tokens and back: ``python -m tokenizer.alpha.infer encode|decode|roundtrip``.

    python -m tokenizer.alpha.infer encode speech.wav tokens/          # -> tokens/speech.npz
    python -m tokenizer.alpha.infer encode corpus/ tokens/ --run runs/20261203-101500
    python -m tokenizer.alpha.infer decode tokens/ decoded/            # every .npz -> .wav
    python -m tokenizer.alpha.infer roundtrip corpus/ recon/ --stream --chunk-frames 10

INPUT is a file or a folder (searched recursively; outputs mirror its layout under
OUTPUT). ``--run`` defaults to the newest alpha run under ``runs/``. Audio is read in any
format libsndfile decodes, mixed to mono and resampled to the codec's rate (each named
in the log); a roundtrip writes every file back at its input's rate (``--output-rate``:
one rate for all). A ``.npz`` holds both stages' codes ``[T, S]`` with the stream
names, frame rate, config hash and checkpoint step
(``tokenizer.alpha.inference.TokenFile``); decoding checks the hash against the codec.
``--stream`` runs a causal codec chunk by chunk (same tokens). Bad files follow the
policy training and eval follow (``common.data.bad_input``): a missing (dangling link),
unreadable, empty, NaN/Inf, truncated (``--keep-truncated``: use what is left), silent
or too short (< 0.1 s) file stops a single-file run; in a folder it is skipped, named
with its reason and counted (``--strict``: stop at the first). Exits 1 when no file
was written.
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

PROG = "python -m tokenizer.alpha.infer"


@dataclasses.dataclass(frozen=True)
class AlphaInferArgs:
    """The flags of ``encode|decode|roundtrip``."""

    files: Annotated[FileArgs, Flat]
    run: Annotated[RunArgs, Flat] = dataclasses.field(default_factory=RunArgs)
    stream: bool = False
    """chunked causal encode/decode (needs a codec trained causal)"""
    chunk_frames: int = 25
    """frames per streaming chunk (25 = 0.5 s at 50 Hz)"""


def run(args: AlphaInferArgs) -> dict:
    """Carry out one command; returns ``{written, skipped, run_dir, step}``."""
    from tokenizer.alpha.inference import AlphaTokenizer
    from tokenizer.codec.file_commands import codec_command

    extra = {} if args.files.loudness else {"loudness_dbfs": None}
    tok = AlphaTokenizer.from_run(args.run.run, step=args.run.step, command=PROG,
                                  batch_size=args.files.batch_size, **extra)
    return codec_command(args.command, args.files.input, args.files.output, tok,
                         strict=args.files.strict, keep_truncated=args.files.keep_truncated,
                         output_rate=args.files.output_rate, stream=args.stream,
                         chunk_frames=args.chunk_frames)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_codec_command(AlphaInferArgs, argv, prog=PROG, description=__doc__)
    setup_console(args.run.verbose)
    result = run(args)
    print_summary(args.command, args.files.output, result, "codec")
    return result


if __name__ == "__main__":
    exit_with(lambda: len(main(sys.argv[1:])["written"]))
