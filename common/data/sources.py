"""Speech sources: which one a run reads (``SourceConfig``) and how to open it.

Loaders, each returning a ``RecordSource`` (or a ``StreamingSource`` for streamed hub
datasets; both in ``common.data.source_base``, with the row checks every loader runs):

  common.data.layouts  ljspeech(root), libritts(root, subsets), common_voice(root, split)
  common.data.hf       audio_folder(root, split), hf_dataset(name, split, config, streaming)
  common.data.corpus   the embedded espeak-ng corpus (``open_source`` kind "corpus")

Training CLIs name a source with ``SourceConfig`` and open it with ``open_source``;
``hash_split`` carves validation and test out of a source without them (LJSpeech, a plain
folder of audio files, a hub dataset with a train split only): by default a slice of
about ``AUTO_HOLDOUT`` (at least one utterance) becomes "validation", logged when the
source is opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from common.data import layouts
from common.data.bad_input import BadInputConfig, SkipStats
from common.data.records import DataError
from common.data.source_base import RecordSource, StreamingSource, check_rows, require_some

log = logging.getLogger(__name__)

AUTO_HOLDOUT = 0.05  # SourceConfig.holdout=None: this share of a split-less source validates


def _record_id(rec: Mapping[str, Any]) -> str:
    return str(rec["id"])


def hash_split(source: RecordSource, split: str, holdout: float | None, *,
               key: Callable[[Mapping[str, Any]], str] = _record_id) -> RecordSource:
    """Carve "validation"/"test" out of a source with no splits of its own.

    A record goes to "validation" when a hash of ``key(record)`` (its id by default)
    falls in ``[0, holdout)``, to "test" in ``[holdout, 2 * holdout)``, else to "train":
    stable across runs and machines, and independent of the order or number of records.

    ``holdout=None`` (automatic): "validation" is the records whose hash falls in
    ``[0, AUTO_HOLDOUT)``, or the one with the smallest hash when none does (a small
    folder still gets one), "train" the rest, and there is no "test". A source of fewer
    than two records cannot be split: ``DataError``.
    """
    if split not in ("train", "validation", "test"):
        raise DataError(f"{source.name}: split must be train, validation or test, got {split!r}")
    if holdout is None:
        return _auto_split(source, split, key)
    if not 0.0 <= holdout < 0.5:
        raise DataError(f"SourceConfig.holdout must be in [0, 0.5), got {holdout}")
    if holdout == 0.0:
        if split != "train":
            raise DataError(f"{source.name} has no {split!r} split of its own: set "
                            "SourceConfig.holdout > 0 to hold out a fraction of it")
        return source
    lo, hi = {"train": (2 * holdout, 1.0), "validation": (0.0, holdout),
              "test": (holdout, 2 * holdout)}[split]
    keep = [i for i in range(len(source)) if lo <= _unit_hash(key(source[i])) < hi]
    return source.select(keep, f"{source.name}:{split}")


def _auto_split(source: RecordSource, split: str,
                key: Callable[[Mapping[str, Any]], str]) -> RecordSource:
    if split == "test":
        raise DataError(f"{source.name} has no 'test' split of its own, and the automatic "
                        "holdout carves only 'validation': set SourceConfig.holdout "
                        "(--data.source.holdout F) to hold out F for each of validation and test")
    if len(source) < 2:
        raise DataError(f"{source.name}: {len(source)} utterance(s) cannot be split into "
                        "train and validation; add files, or give the folder train/ and "
                        "validation/ subdirectories")
    hashes = [_unit_hash(key(source[i])) for i in range(len(source))]
    held = {i for i, h in enumerate(hashes) if h < AUTO_HOLDOUT}
    if not held:
        held = {min(range(len(hashes)), key=hashes.__getitem__)}
    keep = sorted(held) if split == "validation" else [i for i in range(len(source))
                                                       if i not in held]
    told = (source.name, len(source), len(held))
    if told not in _TOLD:  # once, though train and validation each open the source
        _TOLD.add(told)
        log.info("%s has no validation split: holding out %d of its %d utterances for "
                 "validation (a %.0f%% slice chosen by a hash of each one's file path or id, "
                 "at least one), training on the other %d (--data.source.holdout sets the "
                 "share)", source.name, len(held), len(source), 100 * AUTO_HOLDOUT,
                 len(source) - len(held))
    return source.select(keep, f"{source.name}:{split}")


_TOLD: set[tuple[str, int, int]] = set()


def _unit_hash(s: str) -> float:
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big") / 2.0 ** 64


# ------------------------------------------------------------------------ config / CLI


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """Which speech data a training run reads.

    Attributes:
      kind: "corpus" (the embedded espeak-ng corpus), "folder" (HF audiofolder layout),
        "ljspeech", "libritts", "common_voice" (local layouts) or "hf" (a hub name or a
        local dataset path through ``datasets``).
      path: root directory, or the hub name for "hf"; for "corpus" empty means the
        default corpus (built and cached on first use).
      hf_config: the hub dataset's config name ("hf" only).
      streaming: stream the hub dataset ("hf" only; gives a ``StreamingSource``).
      subsets: LibriTTS subsets to consider (empty: all found); a split reads those
        named ``train-*`` / ``dev-*`` / ``test-*``, or the one subset it names.
      holdout: for layouts without a validation/test split of their own (LJSpeech, a
        folder or a (non-streamed) "hf" dataset with neither), the fraction of
        utterances, chosen by a hash of the id (of the file path relative to the root,
        for a folder), held out for each of
        validation and test. None (the default): about 5% (``AUTO_HOLDOUT``, at least
        one utterance) for validation, none for test; 0: nothing held out.
      probe_durations: read audio headers for durations the metadata lacks.
      cache_dir: datasets' cache directory (None: its default).
      corpus_hours: hours of the default corpus to build ("corpus" with an empty path).
      corpus_sample_rate: its sample rate in Hz.
      corpus_holdout_speakers: speakers of the default corpus heard only in its test
        split (unseen: for speaker verification and generalisation tests).
      bad_input: skip or stop on missing/unreadable files (also used by the pipeline).
      language: the language of the transcripts, as an espeak voice ("en-us", "de",
        "fr", ...), for phonemizing them (``common.data.phonemize``). Empty: each
        utterance's own language (the layout's "en", Common Voice's locale, a metadata
        language column; a bare "en" reads as en-us), and "en-us" where it has none.
    """

    kind: Literal["corpus", "folder", "ljspeech", "libritts", "common_voice", "hf"] = "corpus"
    path: str = ""
    hf_config: str | None = None
    streaming: bool = False
    subsets: tuple[str, ...] = ()
    holdout: float | None = None
    probe_durations: bool = True
    cache_dir: str | None = None
    corpus_hours: float = 0.25
    corpus_sample_rate: int = 24000
    corpus_holdout_speakers: int = 0
    bad_input: BadInputConfig = dataclasses.field(default_factory=BadInputConfig)
    language: str = ""

    def __post_init__(self):
        kinds = ("corpus", "folder", "ljspeech", "libritts", "common_voice", "hf")
        if self.kind not in kinds:
            raise ValueError(f"SourceConfig.kind must be one of {kinds}, got {self.kind!r}")
        if self.kind not in ("corpus",) and not self.path:
            raise ValueError(f"SourceConfig.path is required for kind {self.kind!r}")
        if self.holdout is not None and not 0.0 <= self.holdout < 0.5:
            raise ValueError(f"SourceConfig.holdout must be in [0, 0.5) or None (automatic), "
                             f"got {self.holdout}")
        if self.streaming and self.kind != "hf":
            raise ValueError("SourceConfig.streaming is only for kind 'hf'")


# Logical split names ("train", "validation", "test") as each layout spells them.
_CV_SPLITS = {"validation": "dev"}
_LIBRITTS_PREFIX = {"train": "train-", "validation": "dev-", "test": "test-"}


def open_source(cfg: SourceConfig, split: str = "train") -> RecordSource | StreamingSource:
    """Open ``cfg``'s data for ``split`` ("train", "validation", "test", or a name the
    dataset itself uses, e.g. Common Voice "validated" or a LibriTTS subset)."""
    # Imported here, not at the top: hf imports datasets (and with it pyarrow, pandas),
    # seconds that every user of SourceConfig (e.g. a codec's config module) would pay.
    from common.data import hf

    common = {"bad": cfg.bad_input, "probe_durations": cfg.probe_durations}
    if cfg.kind == "corpus":
        return _open_corpus(cfg, split)
    if cfg.kind == "ljspeech":
        return hash_split(layouts.ljspeech(cfg.path, **common), split, cfg.holdout)
    if cfg.kind == "libritts":
        names = list(cfg.subsets) or layouts.libritts_subsets(cfg.path)
        prefix = _LIBRITTS_PREFIX.get(split)
        subsets = ([s for s in names if s.startswith(prefix)] if prefix
                   else [split] if split in names else [])
        if not subsets:
            raise DataError(f"{cfg.path}: no LibriTTS subset for split {split!r} among {names}")
        return layouts.libritts(cfg.path, subsets, **common)
    if cfg.kind == "common_voice":
        return layouts.common_voice(cfg.path, _CV_SPLITS.get(split, split), **common)
    if cfg.kind == "folder":
        splits = hf.folder_splits(cfg.path, cache_dir=cfg.cache_dir)
        # Hold out only from a folder without held-out splits, and then split all of it,
        # so train never contains what validation and test read.
        if cfg.holdout == 0.0 or {"validation", "test"} & set(splits) or split not in (
                "train", "validation", "test"):
            return hf.audio_folder(cfg.path, split, cache_dir=cfg.cache_dir, **common)
        whole = hf.audio_folder(cfg.path, None, cache_dir=cfg.cache_dir, **common)
        root = os.path.abspath(cfg.path)
        # The path inside the folder, not the id: moving or renaming the folder keeps
        # the split (ids start with the folder's name).
        return hash_split(whole, split, cfg.holdout,
                          key=lambda rec: os.path.relpath(rec["audio_path"], root)
                          .replace(os.sep, "/"))
    hf_args = {"streaming": cfg.streaming, "cache_dir": cfg.cache_dir, **common}
    if not cfg.streaming and cfg.holdout != 0.0 and split in ("train", "validation", "test"):
        # A dataset published with a train split only (many speech sets on the hub) is
        # split as a plain folder is: validation (and test) carved out of train.
        splits = hf.dataset_splits(cfg.path, cfg.hf_config, cache_dir=cfg.cache_dir)
        if (splits and hf.has_split(splits, "train")
                and not any(hf.has_split(splits, s) for s in ("validation", "test"))):
            whole = hf.hf_dataset(cfg.path, "train", cfg.hf_config, **hf_args)
            return hash_split(whole, split, cfg.holdout)
    return hf.hf_dataset(cfg.path, split, cfg.hf_config, **hf_args)


def _open_corpus(cfg: SourceConfig, split: str) -> RecordSource:
    # common.data.corpus is built separately and imports espeak; only corpus runs need it.
    from common.data.corpus import corpus_records, default_corpus

    root = cfg.path or str(default_corpus(sample_rate=cfg.corpus_sample_rate,
                                          hours=cfg.corpus_hours,
                                          holdout_speakers=cfg.corpus_holdout_speakers))
    stats = SkipStats()
    meta = os.path.join(root, split, "metadata.jsonl")
    rows = [(rec, f"{meta} row {i + 1}") for i, rec in enumerate(corpus_records(root, split))]
    records = check_rows(rows, bad=cfg.bad_input, stats=stats,
                         probe_durations=cfg.probe_durations)
    require_some(records, len(rows), f"{root} split {split}", stats)
    return RecordSource(records, f"corpus:{split}", load_stats=stats)
