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
from pathlib import Path

from tqdm import tqdm

from common.audio.io import AudioLoadError, load_audio, save_audio
from common.train.checkpoint import CheckpointError
from tokenizer.alpha.infer import AUDIO_SUFFIXES, _read_all, list_inputs
from tokenizer.alpha.inference import TokenFileError, add_run_args, setup_cli_logging
from tokenizer.snac.inference import SnacTokenFile, SnacTokenizer


def run(args: argparse.Namespace) -> dict:
    """Carry out one command; returns ``{written, skipped, run_dir, step}``."""
    extra = {"loudness_dbfs": None} if args.no_loudness else {}
    tok = SnacTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size,
                                 bucket_seconds=args.bucket_seconds, **extra)
    sr = tok.cfg.model.sampling_rate
    out_root, src = Path(args.output), Path(args.input)
    if args.command == "decode":
        items = list_inputs(src, (".npz",))
        loaded, skipped = _read_all(items, SnacTokenFile.load, args.strict, "token files")
        tokens = [t for _, _, t in loaded]
    else:
        items = list_inputs(src, AUDIO_SUFFIXES)
        loaded, skipped = _read_all(items, lambda p: load_audio(p, sr)[0], args.strict,
                                    "audio")
        with tqdm(total=len(loaded), desc="encoding", unit="file") as bar:
            tokens = tok.encode([w for _, _, w in loaded], progress=bar.update)
        for (path, _, _), t in zip(loaded, tokens, strict=True):
            t.source = str(path)
    written = []
    if args.command == "encode":
        for (_, rel, _), t in zip(loaded, tokens, strict=True):
            written.append(t.save(out_root / rel.with_suffix(".npz")))
    else:
        with tqdm(total=len(tokens), desc="decoding", unit="file") as bar:
            wavs = tok.decode(tokens, names=[str(p) for p, _, _ in loaded],
                              progress=bar.update)
        for (_, rel, _), w in zip(loaded, wavs, strict=True):
            written.append(save_audio(out_root / rel.with_suffix(".wav"), w, sr))
    return {"written": written, "skipped": skipped, "run_dir": tok.run_dir, "step": tok.step}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tokenizer.snac.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("encode", "decode", "roundtrip"))
    p.add_argument("input", help="an audio file / .npz, or a folder of them")
    p.add_argument("output", help="output folder")
    add_run_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bucket-seconds", type=float, default=1.0,
                   help="pad lengths up to a multiple of this (0: exactly as PyTorch SNAC)")
    p.add_argument("--no-loudness", action="store_true",
                   help="encode at the input's level instead of the training loudness")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable file instead of skipping it")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    setup_cli_logging()
    args = parser().parse_args(argv)
    result = run(args)
    skipped = result["skipped"]
    print(f"{args.command}: wrote {len(result['written'])} files to {args.output} "
          f"(SNAC {result['run_dir']} step {result['step']})"
          + (f"; skipped {len(skipped)} unreadable: " + "; ".join(skipped) if skipped else ""),
          flush=True)
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (AudioLoadError, TokenFileError, CheckpointError, FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
