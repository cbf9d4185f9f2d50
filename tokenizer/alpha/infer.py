"""Audio to alpha tokens and back: ``python -m tokenizer.alpha.infer encode|decode|roundtrip``.

    python -m tokenizer.alpha.infer encode speech.wav tokens/          # -> tokens/speech.npz
    python -m tokenizer.alpha.infer encode corpus/ tokens/ --run runs/20261203-101500
    python -m tokenizer.alpha.infer decode tokens/ decoded/            # every .npz -> .wav
    python -m tokenizer.alpha.infer roundtrip corpus/ recon/ --stream --chunk-frames 10

INPUT is a file or a folder (searched recursively; outputs mirror its layout under
OUTPUT). ``--run`` defaults to the newest run under ``runs/``. Audio is read in any
format libsndfile decodes, mixed to mono and resampled to the codec's rate. A ``.npz``
holds both stages' codes ``[T, S]`` with the stream names, frame rate, config hash and
checkpoint step (``tokenizer.alpha.inference.TokenFile``); decoding checks the hash
against the codec. ``--stream`` runs a causal codec chunk by chunk (same tokens).
An unreadable file stops a single-file run; in a folder it is skipped, named, counted
(``--strict``: stop at the first).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tokenizer.alpha.inference import AlphaTokenizer
from tokenizer.codec.cli import (
    CLI_ERRORS,
    add_codec_args,
    codec_command,
    print_summary,
    setup_cli_logging,
)


def run(args: argparse.Namespace) -> dict:
    """Carry out one command; returns counts ``{written, skipped}`` and output paths."""
    extra = {"loudness_dbfs": None} if args.no_loudness else {}
    tok = AlphaTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size,
                                  **extra)
    return codec_command(args, tok, stream=args.stream, chunk_frames=args.chunk_frames)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tokenizer.alpha.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_codec_args(p)
    p.add_argument("--stream", action="store_true",
                   help="chunked causal encode/decode (needs a codec trained causal)")
    p.add_argument("--chunk-frames", type=int, default=25,
                   help="frames per streaming chunk (25 = 0.5 s at 50 Hz)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    setup_cli_logging()
    args = parser().parse_args(argv)
    result = run(args)
    print_summary(args, result, "codec")
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CLI_ERRORS as e:
        sys.exit(f"error: {e}")
