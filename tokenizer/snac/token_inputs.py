"""The inputs of ``python -m tokenizer.snac.tokens``, as SNAC token files: token files
read as they are, audio files encoded with a run's codec first, or the embedded corpus
built and encoded; then the analysis (``tokenizer.snac.token_stats``) over them.

``args`` is the command's ``TokensArgs`` (``tokenizer.snac.tokens``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from common.data.bad_input import Skipped, SkipStats, decode_record
from common.data.sources import SourceConfig, open_source
from tokenizer.codec.file_commands import (
    AUDIO_SUFFIXES,
    encode_loaded,
    list_inputs,
    read_all,
    read_audio,
)
from tokenizer.snac.inference import SnacTokenFile, SnacTokenizer
from tokenizer.snac.token_stats import BPE_CHECKPOINTS, analyze

if TYPE_CHECKING:
    from tokenizer.snac.tokens import TokensArgs

log = logging.getLogger(__name__)


def _encode(tok: SnacTokenizer, wavs: list) -> list[SnacTokenFile]:
    with tqdm(total=len(wavs), desc="encoding", unit="file") as bar:
        return tok.encode(wavs, progress=bar.update)


def _tokenizer(args: TokensArgs) -> SnacTokenizer:
    return SnacTokenizer.from_run(args.run.run, step=args.run.step, batch_size=args.batch_size,
                                  command="tokenizer.snac.tokens")


def _corpus(args: TokensArgs) -> tuple[list[SnacTokenFile], list[str], SnacTokenizer]:
    """Encode the embedded corpus's train split (built at the codec's rate if missing)."""
    # Only this input needs the corpus builder (it loads espeak-ng).
    from common.data.corpus import default_corpus

    tok = _tokenizer(args)
    sr = tok.cfg.model.sampling_rate
    root = default_corpus(sample_rate=sr, hours=args.corpus_hours)
    source = open_source(SourceConfig(kind="corpus", path=str(root)), "train")
    records = list(source)[:args.limit] if args.limit else list(source)
    stats, wavs, skipped = SkipStats(), [], []
    for rec in tqdm(records, desc="reading corpus", unit="file"):
        out = decode_record(rec, sr, stats=stats)
        if isinstance(out, Skipped):
            skipped.append(f"{out.path}: {out.reason}"
                           + (f" ({out.detail})" if out.detail else ""))
        else:
            wavs.append(out["audio"])
    return _encode(tok, wavs), skipped, tok


def load_tokens(args: TokensArgs) -> tuple[list[SnacTokenFile], list[str], dict]:
    """``(token files, skipped file messages, {run_dir, step} of the codec or None)``."""
    if args.input == "corpus":
        files, skipped, tok = _corpus(args)
        return files, skipped, {"run_dir": str(tok.run_dir), "step": tok.step}
    src = Path(args.input)
    npz = list_inputs(src, (".npz",)) if src.is_file() or any(src.rglob("*.npz")) else []
    if npz:
        items = npz[:args.limit] if args.limit else npz
        loaded, skipped = read_all(items, SnacTokenFile.load, args.strict, "token files")
        return [t for _, _, t in loaded], skipped, {"run_dir": None, "step": None}
    items = list_inputs(src, AUDIO_SUFFIXES)
    items = items[:args.limit] if args.limit else items
    tok = _tokenizer(args)
    sr = tok.cfg.model.sampling_rate
    loaded, skipped = read_audio(items, sr, args.strict)
    files = encode_loaded(tok, loaded)
    return files, skipped, {"run_dir": str(tok.run_dir), "step": tok.step}


def checkpoints(merges: int) -> tuple[int, ...]:
    """The merge counts to report: the standard ones below ``merges``, and ``merges``."""
    if merges <= 0:
        return BPE_CHECKPOINTS
    return (*(m for m in BPE_CHECKPOINTS if m < merges), merges)


def analyse_inputs(args: TokensArgs) -> dict:
    """Load or encode, then analyse: ``{report, skipped, run_dir, step}``."""
    files, skipped, codec = load_tokens(args)
    if not files:
        raise ValueError(f"{args.input}: no readable inputs ({len(skipped)} skipped)")
    first = files[0]
    for t in files[1:]:  # statistics over two codecs' codes would mean nothing
        if tuple(t.strides) != tuple(first.strides) or t.codebook_size != first.codebook_size:
            raise ValueError(f"{t.source or 'a token file'}: strides {t.strides} / codebook "
                             f"{t.codebook_size}, but {first.source or 'the first file'} has "
                             f"{first.strides} / {first.codebook_size}")
    strides = tuple(first.strides)
    with tqdm(total=len(strides) + 1, desc="analysing", unit="stream") as bar:
        report = analyze([t.codes for t in files], strides, first.codebook_size,
                         merges=args.merges, top_k=args.top_k,
                         checkpoints=checkpoints(args.merges), progress=lambda _: bar.update(1))
    return {"report": report, "skipped": skipped, **codec}
