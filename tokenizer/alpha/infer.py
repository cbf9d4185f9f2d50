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
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from common.audio.io import AudioLoadError, load_audio, save_audio
from common.train.checkpoint import CheckpointError
from tokenizer.alpha.inference import (
    AlphaTokenizer,
    TokenFile,
    TokenFileError,
    add_run_args,
    setup_cli_logging,
)

log = logging.getLogger("tokenizer.alpha.infer")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def list_inputs(path: Path, suffixes: Sequence[str]) -> list[tuple[Path, Path]]:
    """``[(file, path relative to the input root)]`` for a file or a folder."""
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{path}: no {'/'.join(suffixes)} files in this folder")
    return [(p, p.relative_to(path)) for p in files]


def _read_all(items, read, strict: bool, what: str):
    """Read every input; a bad one raises (single file, ``strict``) or is skipped."""
    ok, skipped = [], []
    for path, rel in tqdm(items, desc=f"reading {what}", unit="file", disable=len(items) < 20):
        try:
            ok.append((path, rel, read(path)))
        except (AudioLoadError, TokenFileError) as e:
            if strict or len(items) == 1:
                raise
            log.warning("skipping %s", e)
            skipped.append(str(e))
    return ok, skipped


def run(args: argparse.Namespace) -> dict:
    """Carry out one command; returns counts ``{written, skipped}`` and output paths."""
    extra = {"loudness_dbfs": None} if args.no_loudness else {}
    tok = AlphaTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size,
                                  **extra)
    out_root, kw = Path(args.output), dict(stream=args.stream, chunk_frames=args.chunk_frames)
    src = Path(args.input)
    if args.command == "decode":
        items = list_inputs(src, (".npz",))
        loaded, skipped = _read_all(items, TokenFile.load, args.strict, "token files")
        tokens = [t for _, _, t in loaded]
    else:
        items = list_inputs(src, AUDIO_SUFFIXES)
        loaded, skipped = _read_all(
            items, lambda p: load_audio(p, tok.cfg.sample_rate)[0], args.strict, "audio")
        with tqdm(total=len(loaded), desc="encoding", unit="file") as bar:
            tokens = tok.encode([w for _, _, w in loaded], progress=bar.update, **kw)
        for (path, _, _), t in zip(loaded, tokens, strict=True):
            t.source = str(path)
    written = []
    if args.command == "encode":
        for (_, rel, _), t in zip(loaded, tokens, strict=True):
            written.append(t.save(out_root / rel.with_suffix(".npz")))
    else:
        with tqdm(total=len(tokens), desc="decoding", unit="file") as bar:
            wavs = tok.decode(tokens, names=[str(p) for p, _, _ in loaded],
                              progress=bar.update, **kw)
        for (_, rel, _), w in zip(loaded, wavs, strict=True):
            written.append(save_audio(out_root / rel.with_suffix(".wav"), w,
                                      tok.cfg.sample_rate))
    return {"written": written, "skipped": skipped, "run_dir": tok.run_dir, "step": tok.step}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tokenizer.alpha.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("encode", "decode", "roundtrip"))
    p.add_argument("input", help="an audio file / .npz, or a folder of them")
    p.add_argument("output", help="output folder")
    add_run_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--stream", action="store_true",
                   help="chunked causal encode/decode (needs a codec trained causal)")
    p.add_argument("--chunk-frames", type=int, default=25,
                   help="frames per streaming chunk (25 = 0.5 s at 50 Hz)")
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
          f"(codec {result['run_dir']} step {result['step']})"
          + (f"; skipped {len(skipped)} unreadable: " + "; ".join(skipped) if skipped else ""),
          flush=True)
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (AudioLoadError, TokenFileError, CheckpointError, FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
