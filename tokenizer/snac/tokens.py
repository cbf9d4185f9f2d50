"""How SNAC codes look to a language model: ``python -m tokenizer.snac.tokens INPUT``.

    python -m tokenizer.snac.tokens tokens/                       # .npz from snac.infer
    python -m tokenizer.snac.tokens speech/ --run runs/snac24-converted --limit 200
    python -m tokenizer.snac.tokens corpus --merges 500 --json stats.json

INPUT is a folder searched recursively for token files (``.npz`` of
``tokenizer.snac.inference.SnacTokenFile``), or else for audio files, which are encoded
with the codec of ``--run`` (default: the newest run under ``runs/``) first; or the word
``corpus``: the train split of the embedded espeak corpus at the codec's rate. Prints one
row per level and for the flattened (depth-first per coarse frame) stream: codebook
usage, entropy, Gini, bigram statistics, repetition and BPE compression (definitions in
``tokenizer.snac.token_stats``), then a recommendation. Unreadable files are skipped,
named and counted (``--strict``: stop at the first).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from common.data.bad_input import Skipped, SkipStats, decode_record
from common.data.sources import SourceConfig, open_source
from tokenizer.codec.cli import (
    AUDIO_SUFFIXES,
    CLI_ERRORS,
    add_run_args,
    encode_loaded,
    list_inputs,
    read_all,
    read_audio,
    setup_cli_logging,
)
from tokenizer.snac.inference import SnacTokenFile, SnacTokenizer
from tokenizer.snac.token_stats import BPE_CHECKPOINTS, TokenReport, analyze, recommendation

log = logging.getLogger("tokenizer.snac.tokens")


def _encode(tok: SnacTokenizer, wavs: list) -> list[SnacTokenFile]:
    with tqdm(total=len(wavs), desc="encoding", unit="file") as bar:
        return tok.encode(wavs, progress=bar.update)


def _corpus(args: argparse.Namespace) -> tuple[list[SnacTokenFile], list[str], SnacTokenizer]:
    """Encode the embedded corpus's train split (built at the codec's rate if missing)."""
    # Only this input needs the corpus builder (it loads espeak-ng).
    from common.data.corpus import default_corpus

    tok = SnacTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size)
    sr = tok.cfg.model.sampling_rate
    root = default_corpus(sample_rate=sr, hours=args.corpus_hours)
    source = open_source(SourceConfig(kind="corpus", path=str(root)), "train")
    records = list(source)[:args.limit] if args.limit else list(source)
    stats, wavs, skipped = SkipStats(), [], []
    for rec in tqdm(records, desc="reading corpus", unit="file"):
        out = decode_record(rec, sr, stats=stats)
        if isinstance(out, Skipped):
            skipped.append(f"{out.path}: {out.reason}")
        else:
            wavs.append(out["audio"])
    return _encode(tok, wavs), skipped, tok


def load_tokens(args: argparse.Namespace) -> tuple[list[SnacTokenFile], list[str], dict]:
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
    tok = SnacTokenizer.from_run(args.run, step=args.step, batch_size=args.batch_size)
    sr = tok.cfg.model.sampling_rate
    loaded, skipped = read_audio(items, sr, args.strict)
    files = encode_loaded(tok, loaded)
    return files, skipped, {"run_dir": str(tok.run_dir), "step": tok.step}


def checkpoints(merges: int) -> tuple[int, ...]:
    """The merge counts to report: the standard ones below ``merges``, and ``merges``."""
    if merges <= 0:
        return BPE_CHECKPOINTS
    return (*(m for m in BPE_CHECKPOINTS if m < merges), merges)


def run(args: argparse.Namespace) -> dict:
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tokenizer.snac.tokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a folder of .npz token files or of audio, or 'corpus'")
    add_run_args(p)
    p.add_argument("--merges", type=int, default=1000,
                   help="BPE merges to simulate (0: no BPE)")
    p.add_argument("--json", default=None, help="also write the full report to this file")
    p.add_argument("--counts", action="store_true",
                   help="include per-code counts in the JSON report")
    p.add_argument("--limit", type=int, default=None, help="use the first N files only")
    p.add_argument("--top-k", type=int, default=10, help="most frequent codes to list")
    p.add_argument("--batch-size", type=int, default=8, help="encoding batch size")
    p.add_argument("--corpus-hours", type=float, default=0.25,
                   help="size of the embedded corpus to build for INPUT 'corpus'")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable file instead of skipping it")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    setup_cli_logging()
    args = parser().parse_args(argv)
    if args.merges < 0 or (args.limit is not None and args.limit < 1):
        raise ValueError("--merges must be >= 0 and --limit >= 1")
    result = run(args)
    report: TokenReport = result["report"]
    skipped = result["skipped"]
    print(f"{report.files} files, {report.frames} frames, strides {report.strides}, "
          f"codebook {report.codebook_size}"
          + (f"; skipped {len(skipped)} unreadable: " + "; ".join(skipped) if skipped else ""))
    print(report.format_table())
    print("\n" + recommendation(report), flush=True)
    if args.json:
        out = {**report.to_dict(counts=args.counts), "input": args.input,
               "run_dir": result["run_dir"], "step": result["step"], "skipped": skipped}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CLI_ERRORS as e:
        sys.exit(f"error: {e}")
