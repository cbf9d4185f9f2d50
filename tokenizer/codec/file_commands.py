"""What ``infer`` (and SNAC's ``tokens``) do with files: input files or folders, read
under the shared bad-input policy, and encode / decode / roundtrip over a tokenizer into
an output folder that mirrors the input's layout.

Audio is read by ``common.data.bad_input.decode_record``, the policy training,
evaluation and preprocessing follow: a missing (dangling link), unreadable, empty,
NaN/Inf, truncated, silent or too short file is skipped with a line naming it and the
reason (the same reason names and counts as everywhere), or stops the command
(``strict``, and always for a single input file). So is a file too long for the free
memory in one model call ("too_long", with what it needs and what is free). A file
the codec can use after a fix (several channels mixed to mono, another sample rate
resampled, a kept truncated file) gets an INFO line (a WARNING for truncation) saying
what was done. A roundtrip writes
each output at its input's own sample rate unless ``output_rate`` says otherwise.

A tokenizer here is a ``tokenizer.codec.tokenizer.CodecTokenizer``: ``encode``,
``decode``, ``sample_rate``, ``token_file_type`` (its ``load``), ``run_dir`` and ``step``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.audio.io import resample, save_audio
from common.data.bad_input import BadInputConfig, Skipped, SkipStats, decode_record
from tokenizer.codec.token_io import TokenFileError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def _dangling(p: Path) -> bool:
    return p.is_symlink() and not p.exists()


def list_inputs(path: Path, suffixes: Sequence[str]) -> list[tuple[Path, Path]]:
    """``[(file, path relative to the input root)]`` for a file or a folder. A dangling
    symbolic link with a matching suffix is listed (reading it then reports it)."""
    if path.is_file():
        return [(path, Path(path.name))]
    if _dangling(path):
        raise FileNotFoundError(f"{path}: broken symbolic link to {os.readlink(path)}")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if (p.is_file() or _dangling(p))
                   and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{path}: no {'/'.join(suffixes)} files in this folder")
    return [(p, p.relative_to(path)) for p in files]


def _message(marker: Skipped) -> str:
    return f"{marker.path}: {marker.reason}" + (f" ({marker.detail})" if marker.detail else "")


def read_all(items, read: Callable[[Path], Any], strict: bool, what: str,
             stats: SkipStats | None = None):
    """``(ok [(path, rel, value)], skipped [message])``: every input read; a bad one
    raises (a single file, or ``strict``) or is skipped, named and counted in ``stats``
    as "unreadable"."""
    stats = stats if stats is not None else SkipStats()
    ok, skipped = [], []
    for path, rel in tqdm(items, desc=f"reading {what}", unit="file", disable=len(items) < 20):
        try:
            ok.append((path, rel, read(path)))
        except TokenFileError as e:
            if strict or len(items) == 1:
                raise
            marker = Skipped(str(path), "unreadable", str(e).removeprefix(f"{path}: "))
            stats.skip(marker)
            skipped.append(_message(marker))
    return ok, skipped


def read_audio(items, sample_rate: int, strict: bool, *, keep_truncated: bool = False,
               stats: SkipStats | None = None):
    """``(ok [(path, rel, record)], skipped [message])``: each file decoded by
    ``decode_record`` (the record's ``audio`` is mono at ``sample_rate``; it also says
    the file's ``source_sample_rate`` and ``source_channels``). A bad file raises
    ``BadInputError`` (a single file, or ``strict``) or is skipped, named and counted
    in ``stats`` (default: one that names fixed files at INFO)."""
    stats = stats if stats is not None else SkipStats(note_level=logging.INFO)
    policy = BadInputConfig(mode="strict" if strict or len(items) == 1 else "skip",
                            truncated="keep" if keep_truncated else "skip")
    ok, skipped = [], []
    for path, rel in tqdm(items, desc="reading audio", unit="file", disable=len(items) < 20):
        out = decode_record({"audio_path": str(path)}, sample_rate, policy, stats)
        if isinstance(out, Skipped):
            skipped.append(_message(out))
        else:
            ok.append((path, rel, out))
    return ok, skipped


def _too_big(loaded, stats: SkipStats, skipped: list[str], strict: bool):
    """The tokenizer's ``on_too_big``: skip an input that does not fit in memory, named
    and counted as "too_long" (None under ``strict`` or for a single input: it raises)."""
    if strict or len(loaded) == 1:
        return None

    def skip(i: int, error: Exception) -> None:
        path = str(loaded[i][0])
        marker = Skipped(path, "too_long", str(error).removeprefix(f"{path}: "))
        stats.skip(marker)
        skipped.append(_message(marker))
    return skip


def encode_loaded(tok, loaded, *, on_too_big=None, **kw) -> list:
    """Encode ``read_audio``'s records with a progress bar; each token file's ``source``
    is its input path (None for an input ``on_too_big`` took)."""
    with tqdm(total=len(loaded), desc="encoding", unit="file") as bar:
        tokens = tok.encode([rec["audio"] for _, _, rec in loaded],
                            names=[str(p) for p, _, _ in loaded], progress=bar.update,
                            on_too_big=on_too_big, **kw)
    for (path, _, _), t in zip(loaded, tokens, strict=True):
        if t is not None:
            t.source = str(path)
    return tokens


def _kept(loaded: list, outputs: list) -> tuple[list, list]:
    """The inputs and outputs whose output is not None (not skipped)."""
    pairs = [(item, o) for item, o in zip(loaded, outputs, strict=True) if o is not None]
    return [p for p, _ in pairs], [o for _, o in pairs]


def codec_command(command: str, src: Path, out_root: Path, tok, *, strict: bool = False,
                  output_rate: int | None = None, keep_truncated: bool = False,
                  **kw) -> dict:
    """``command`` (encode / decode / roundtrip) from ``src`` to ``out_root`` (mirroring a
    folder's layout); ``kw`` go to encode and decode. Audio is encoded at the
    tokenizer's ``sample_rate``; written audio is at ``output_rate`` (None: a roundtrip
    at each input's own rate, a decode at the codec's). Returns ``{written, skipped
    (messages), skip_counts, notes (by reason), run_dir, step}``."""
    out_root, src, sample_rate = Path(out_root), Path(src), tok.sample_rate
    if output_rate is not None and output_rate <= 0:
        raise ValueError(f"--output-rate must be a positive rate in Hz, got {output_rate}")
    stats = SkipStats(note_level=logging.INFO)
    if command == "decode":
        loaded, skipped = read_all(list_inputs(src, (".npz",)), tok.token_file_type.load,
                                   strict, "token files", stats)
        tokens = [t for _, _, t in loaded]
    else:
        loaded, skipped = read_audio(list_inputs(src, AUDIO_SUFFIXES), sample_rate, strict,
                                     keep_truncated=keep_truncated, stats=stats)
        tokens = encode_loaded(tok, loaded, on_too_big=_too_big(loaded, stats, skipped,
                                                                strict), **kw)
        loaded, tokens = _kept(loaded, tokens)
    written = []
    if command == "encode":
        for (_, rel, _), t in zip(loaded, tokens, strict=True):
            written.append(t.save(out_root / rel.with_suffix(".npz")))
    else:
        rates = [output_rate or (rec["source_sample_rate"] if command == "roundtrip"
                                 else sample_rate) for _, _, rec in loaded]
        if command == "roundtrip" and output_rate is None and set(rates) - {sample_rate}:
            log.info("writing each output at its input's sample rate (the codec runs at "
                     "%d Hz; --output-rate picks one rate for all)", sample_rate)
        with tqdm(total=len(tokens), desc="decoding", unit="file") as bar:
            wavs = tok.decode(tokens, names=[str(p) for p, _, _ in loaded],
                              progress=bar.update,
                              on_too_big=_too_big(loaded, stats, skipped, strict), **kw)
        keep = [w is not None for w in wavs]
        loaded, wavs = _kept(loaded, wavs)
        rates = [r for r, k in zip(rates, keep, strict=True) if k]
        for (_, rel, _), w, rate in zip(loaded, wavs, rates, strict=True):
            w = resample(w, sample_rate, rate) if rate != sample_rate else w
            written.append(save_audio(out_root / rel.with_suffix(".wav"), w, rate))
    return {"written": written, "skipped": skipped, "skip_counts": dict(stats.skipped),
            "notes": dict(stats.notes), "run_dir": tok.run_dir, "step": tok.step}
