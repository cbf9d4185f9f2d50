"""Local corpus layouts read directly (no ``datasets``): LJSpeech, LibriTTS, Common Voice.

Each reader walks its metadata, builds records (``common.data.records``) with absolute
audio paths, and hands them to ``common.data.source_base.check_rows``: a row whose audio is
missing (or whose header is unreadable, when durations are probed) is skipped with a
count and a log line naming the file and metadata row, or raises ``BadInputError``
under ``BadInputConfig(mode="strict")``. A malformed metadata row always raises
``DataError`` naming the file and line: that is a broken download, not one bad clip;
so does a layout whose rows are all bad (a wrong root, an undecodable format).

Audio formats are whatever libsndfile decodes. The soundfile wheel installed here ships
libsndfile 1.2.2, which reads MP3 (``"MP3" in soundfile.available_formats()``), so
Common Voice clips decode as they are; an older system libsndfile (< 1.1) would not,
and every clip would then be counted as "unreadable".
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence
from typing import Any

from common.data.bad_input import BadInputConfig, SkipStats
from common.data.records import DataError, make_record
from common.data.source_base import RecordSource, check_rows, require_some

_SPLIT_TSV = ("train", "dev", "test", "validated", "invalidated", "other")


def _root(root: str | os.PathLike) -> str:
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a directory")
    return root


def _need(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing {what}")
    return path


def _finish(rows: list[tuple[dict[str, Any], str]], name: str, bad: BadInputConfig,
            probe_durations: bool, stats: SkipStats | None) -> RecordSource:
    stats = stats if stats is not None else SkipStats()
    records = check_rows(rows, bad=bad, stats=stats, probe_durations=probe_durations)
    require_some(records, len(rows), name, stats)
    return RecordSource(records, name, load_stats=stats)


def ljspeech(root: str | os.PathLike, *, bad: BadInputConfig = BadInputConfig(),
             probe_durations: bool = True, stats: SkipStats | None = None) -> RecordSource:
    """LJSpeech: ``metadata.csv`` (``id|text|normalized text``, no header) and ``wavs/``.

    One speaker ("LJ"), English. ``text`` is the normalised transcript (numbers and
    abbreviations spelled out) when the row has one, else the raw one. Ids ``ljs/<id>``.
    The dataset has no splits; ``open_source`` holds some out by id hash.
    """
    root = _root(root)
    meta = _need(os.path.join(root, "metadata.csv"), "LJSpeech metadata.csv")
    rows = []
    with open(meta, encoding="utf-8", newline="") as f:
        # Transcripts contain quote characters that are not CSV quoting.
        for line, cols in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if not cols or not any(c.strip() for c in cols):
                continue
            if len(cols) not in (2, 3) or not cols[0].strip():
                raise DataError(f"{meta} line {line}: expected 'id|text|normalized', "
                                f"got {len(cols)} fields")
            uid = cols[0].strip()
            text = (cols[2] if len(cols) == 3 and cols[2].strip() else cols[1]).strip()
            where = f"{meta} line {line}"
            rows.append((make_record(where=where, id=f"ljs/{uid}",
                                     audio_path=os.path.join(root, "wavs", f"{uid}.wav"),
                                     text=text, speaker="LJ", language="en"), where))
    return _finish(rows, "ljspeech", bad, probe_durations, stats)


def libritts_subsets(root: str | os.PathLike) -> list[str]:
    """Subset directories under a LibriTTS root (``train-clean-100``, ``dev-clean``, ...)."""
    root = _root(root)
    return sorted(d for d in os.listdir(root)
                  if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def libritts(root: str | os.PathLike, subsets: Sequence[str] | None = None, *,
             bad: BadInputConfig = BadInputConfig(), probe_durations: bool = True,
             stats: SkipStats | None = None) -> RecordSource:
    """LibriTTS (and LibriTTS-R): ``<subset>/<speaker>/<chapter>/<utt>.wav`` with
    ``<utt>.normalized.txt`` / ``<utt>.original.txt`` beside each clip.

    ``subsets=None`` reads every subset directory. ``text`` is the normalised
    transcript, else the original; a transcript file without its wav counts as a
    missing file; a wav without transcript keeps ``text=""``. Ids ``libritts/<utt>``;
    ``speaker`` is the speaker directory; extra field ``subset``.
    """
    root = _root(root)
    have = libritts_subsets(root)
    subsets = list(subsets) if subsets is not None else have
    unknown = [s for s in subsets if s not in have]
    if unknown:
        raise DataError(f"{root}: no LibriTTS subset {unknown}; found {have}")
    rows = []
    for subset in subsets:
        pattern = os.path.join(root, subset, "*", "*", "*")
        stems: dict[str, set[str]] = {}
        for path in glob.glob(pattern + ".wav") + glob.glob(pattern + ".*.txt"):
            stem, kind = _libritts_split(path)
            if kind:
                stems.setdefault(stem, set()).add(kind)
        for stem in sorted(stems):
            kinds = stems[stem]
            txt = next((f"{stem}.{k}.txt" for k in ("normalized", "original") if k in kinds),
                       None)
            where = txt or f"{stem}.wav"
            speaker = os.path.basename(os.path.dirname(os.path.dirname(stem)))
            rows.append((make_record(where=where, id=f"libritts/{os.path.basename(stem)}",
                                     audio_path=f"{stem}.wav", text=_read_text(txt),
                                     speaker=speaker, language="en", subset=subset), where))
    return _finish(rows, f"libritts:{'+'.join(subsets)}", bad, probe_durations, stats)


def _libritts_split(path: str) -> tuple[str, str]:
    """``(stem, kind)``: kind is "wav", "normalized", "original" or "" (other files)."""
    if path.endswith(".wav"):
        return path[:-4], "wav"
    for kind in ("normalized", "original"):
        if path.endswith(f".{kind}.txt"):
            return path[: -len(kind) - 5], kind
    return path, ""


def _read_text(path: str | None) -> str:
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return " ".join(f.read().split())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read transcript ({e})") from e


def common_voice(root: str | os.PathLike, split: str = "train", *,
                 bad: BadInputConfig = BadInputConfig(), probe_durations: bool = True,
                 stats: SkipStats | None = None) -> RecordSource:
    """Common Voice (one locale): ``<split>.tsv`` (client_id, path, sentence, locale, age,
    gender, ...) and ``clips/<path>`` (MP3; see the module doc on decoding).

    ``split`` is the tsv's name: train, dev, test, validated, invalidated or other.
    Durations come from ``clip_durations.tsv`` (milliseconds) when the release has it,
    else from the headers. Ids ``cv/<locale>/<clip name without extension>``; ``speaker``
    is ``client_id``; extra fields ``age``, ``gender``, ``accents`` when present.
    """
    root = _root(root)
    tsv = os.path.join(root, f"{split}.tsv")
    if not os.path.isfile(tsv):
        have = [s for s in _SPLIT_TSV if os.path.isfile(os.path.join(root, f"{s}.tsv"))]
        raise DataError(f"{tsv}: no such Common Voice split file; found {have}")
    durations = _cv_durations(root)
    fallback_locale = os.path.basename(root)
    rows = []
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{tsv}: missing columns {sorted(missing)}; "
                            f"has {reader.fieldnames}")
        for line, row in enumerate(reader, 2):
            where = f"{tsv} line {line}"
            clip = (row.get("path") or "").strip()
            if not clip or None in row:  # DictReader puts surplus fields under None
                raise DataError(f"{where}: malformed row (no clip path or extra fields)")
            locale = (row.get("locale") or "").strip() or fallback_locale
            extra = {k: row[k] for k in ("age", "gender", "accents") if row.get(k)}
            rows.append((make_record(where=where, id=f"cv/{locale}/{os.path.splitext(clip)[0]}",
                                     audio_path=os.path.join(root, "clips", clip),
                                     text=(row.get("sentence") or "").strip(),
                                     speaker=row["client_id"], language=locale,
                                     duration=durations.get(clip, -1.0), **extra), where))
    return _finish(rows, f"common_voice:{split}", bad, probe_durations, stats)


def _cv_durations(root: str) -> dict[str, float]:
    path = os.path.join(root, "clip_durations.tsv")
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader, None)  # header: clip, duration[ms]
        for line, cols in enumerate(reader, 2):
            try:
                out[cols[0]] = float(cols[1]) / 1000.0
            except (IndexError, ValueError) as e:
                raise DataError(f"{path} line {line}: expected 'clip<TAB>milliseconds'") from e
    return out
