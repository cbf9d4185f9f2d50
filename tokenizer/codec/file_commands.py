"""What ``infer`` (and SNAC's ``tokens``) do with files: input files or folders, read
with skip counts, and encode / decode / roundtrip over a tokenizer into an output
folder that mirrors the input's layout.

A tokenizer here is a ``tokenizer.codec.tokenizer.CodecTokenizer``: ``encode``,
``decode``, ``sample_rate``, ``token_file_type`` (its ``load``), ``run_dir`` and ``step``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.audio.io import AudioLoadError, load_audio, save_audio
from tokenizer.codec.token_io import TokenFileError

log = logging.getLogger(__name__)

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


def codec_command(command: str, src: Path, out_root: Path, tok, *, strict: bool = False,
                  **kw) -> dict:
    """``command`` (encode / decode / roundtrip) from ``src`` to ``out_root`` (mirroring a
    folder's layout) at the tokenizer's ``sample_rate``; ``kw`` go to encode and decode.
    Returns ``{written, skipped, run_dir, step}``."""
    out_root, src, sample_rate = Path(out_root), Path(src), tok.sample_rate
    if command == "decode":
        loaded, skipped = read_all(list_inputs(src, (".npz",)), tok.token_file_type.load,
                                   strict, "token files")
        tokens = [t for _, _, t in loaded]
    else:
        loaded, skipped = read_audio(list_inputs(src, AUDIO_SUFFIXES), sample_rate, strict)
        tokens = encode_loaded(tok, loaded, **kw)
    written = []
    if command == "encode":
        for (_, rel, _), t in zip(loaded, tokens, strict=True):
            written.append(t.save(out_root / rel.with_suffix(".npz")))
    else:
        with tqdm(total=len(tokens), desc="decoding", unit="file") as bar:
            wavs = tok.decode(tokens, names=[str(p) for p, _, _ in loaded],
                              progress=bar.update, **kw)
        for (_, rel, _), w in zip(loaded, wavs, strict=True):
            written.append(save_audio(out_root / rel.with_suffix(".wav"), w, sample_rate))
    return {"written": written, "skipped": skipped, "run_dir": tok.run_dir, "step": tok.step}
