"""The command-line plumbing the codecs' commands share: ``--run`` / ``--step`` and the
logging setup of every ``infer`` / ``eval`` / ``train``; for ``infer`` (and SNAC's
``tokens``) input files or folders, reading them with skip counts, encode / decode /
roundtrip over a tokenizer, the common flags and the closing message.

A tokenizer here is a ``tokenizer.codec.tokenizer.CodecTokenizer``: ``encode``,
``decode``, ``sample_rate``, ``token_file_type`` (its ``load``), ``run_dir`` and ``step``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.audio.io import AudioLoadError, load_audio, save_audio
from common.train.checkpoint import CheckpointError
from tokenizer.codec.token_io import TokenFileError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
# What a command reports as "error: ..." instead of a traceback.
CLI_ERRORS = (AudioLoadError, TokenFileError, CheckpointError, FileNotFoundError, ValueError)


def checkpoint_step(text: str) -> int | str:
    """``--step`` values: an int, ``latest`` or ``best``."""
    return text if text in ("latest", "best") else int(text)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """``--run`` and ``--step``, as the infer and eval commands take them."""
    p.add_argument("--run", default=None, help="run directory (default: newest under runs/)")
    p.add_argument("--step", default=None, type=checkpoint_step,
                   help="checkpoint step, 'latest' (default) or 'best'")


def setup_cli_logging() -> None:
    """INFO logs with timestamps for the codec commands; orbax's per-call chatter off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)


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


def read_all(items, read: Callable[[Path], Any], strict: bool, what: str):
    """``(ok [(path, rel, value)], skipped [message])``: every input read; a bad one
    raises (a single file, or ``strict``) or is skipped, named and counted."""
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


def read_audio(items, sample_rate: int, strict: bool):
    """``read_all`` of audio files, mixed to mono at ``sample_rate``."""
    return read_all(items, lambda p: load_audio(p, sample_rate)[0], strict, "audio")


def encode_loaded(tok, loaded, **kw) -> list:
    """Encode ``read_audio``'s waveforms with a progress bar; each token file's
    ``source`` is its input path."""
    with tqdm(total=len(loaded), desc="encoding", unit="file") as bar:
        tokens = tok.encode([w for _, _, w in loaded], progress=bar.update, **kw)
    for (path, _, _), t in zip(loaded, tokens, strict=True):
        t.source = str(path)
    return tokens


def codec_command(args: argparse.Namespace, tok, **kw) -> dict:
    """``args.command`` (encode / decode / roundtrip) from ``args.input`` to
    ``args.output`` (mirroring a folder's layout) at the tokenizer's ``sample_rate``;
    ``kw`` go to encode and decode. Returns ``{written, skipped, run_dir, step}``."""
    out_root, src, sample_rate = Path(args.output), Path(args.input), tok.sample_rate
    if args.command == "decode":
        loaded, skipped = read_all(list_inputs(src, (".npz",)), tok.token_file_type.load,
                                   args.strict, "token files")
        tokens = [t for _, _, t in loaded]
    else:
        loaded, skipped = read_audio(list_inputs(src, AUDIO_SUFFIXES), sample_rate,
                                     args.strict)
        tokens = encode_loaded(tok, loaded, **kw)
    written = []
    if args.command == "encode":
        for (_, rel, _), t in zip(loaded, tokens, strict=True):
            written.append(t.save(out_root / rel.with_suffix(".npz")))
    else:
        with tqdm(total=len(tokens), desc="decoding", unit="file") as bar:
            wavs = tok.decode(tokens, names=[str(p) for p, _, _ in loaded],
                              progress=bar.update, **kw)
        for (_, rel, _), w in zip(loaded, wavs, strict=True):
            written.append(save_audio(out_root / rel.with_suffix(".wav"), w, sample_rate))
    return {"written": written, "skipped": skipped, "run_dir": tok.run_dir, "step": tok.step}


def add_codec_args(p: argparse.ArgumentParser) -> None:
    """command, input, output, ``--run``/``--step``, ``--batch-size``, ``--no-loudness``,
    ``--strict``."""
    p.add_argument("command", choices=("encode", "decode", "roundtrip"))
    p.add_argument("input", help="an audio file / .npz, or a folder of them")
    p.add_argument("output", help="output folder")
    add_run_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-loudness", action="store_true",
                   help="encode at the input's level instead of the training loudness")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable file instead of skipping it")


def print_summary(args: argparse.Namespace, result: dict, codec: str) -> None:
    skipped = result["skipped"]
    print(f"{args.command}: wrote {len(result['written'])} files to {args.output} "
          f"({codec} {result['run_dir']} step {result['step']})"
          + (f"; skipped {len(skipped)} unreadable: " + "; ".join(skipped) if skipped else ""),
          flush=True)
