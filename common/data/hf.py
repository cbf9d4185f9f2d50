"""Sources through Hugging Face ``datasets``: audio folders and hub (or local) datasets.

We never let ``datasets`` decode audio: version 5 decodes (and even encodes, when a
folder builder writes its cache) through torchcodec, which we do not install. Audio
columns are read as ``{"bytes", "path"}`` (``Audio(decode=False)``) and decoded by
soundfile in the pipeline (``common.data.bad_input.decode_record``). Folder builders
(audiofolder, and hub repos that are plain audio folders) get a torch-free ``Audio``
feature that only stores paths and bytes (``_UndecodedAudio``).

Metadata columns are mapped onto the record fields by common names (first one present
wins; see ``COLUMNS``); other scalar columns are kept as extra fields, class labels as
their names. Entries whose audio is stored inline (``bytes``, as hub parquet datasets
do) become records with ``audio_bytes``; a map-style source fetches those bytes from
the memory-mapped Arrow table when the record is read, so the source stays small.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
from datasets.packaged_modules.folder_based_builder.folder_based_builder import (
    FolderBasedBuilder,
)

from common.data.bad_input import BadInputConfig, SkipStats
from common.data.records import FIELDS, DataError, make_record
from common.data.source_base import (
    RecordSource,
    StreamingSource,
    check_rows,
    reject,
    require_some,
)

log = logging.getLogger(__name__)

# Record field <- metadata column names, in order of preference.
COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text", "transcription", "sentence", "normalized_text"),
    "phonemes": ("phonemes",),
    "speaker": ("speaker", "speaker_id", "client_id"),
    "language": ("language", "locale", "lang"),
    "duration": ("duration",),
}
_SPLIT_ALIASES = {"validation": ("dev", "valid", "val"), "test": ("eval", "testing")}
_BATCH = 1000


@dataclasses.dataclass
class _UndecodedAudio(datasets.Audio):
    """``datasets.Audio`` that stores paths/bytes without torchcodec and never decodes."""

    decode: bool = False

    def encode_example(self, value: Any) -> dict[str, Any]:
        if isinstance(value, str | os.PathLike):
            return {"bytes": None, "path": os.fspath(value)}
        if isinstance(value, bytes | bytearray):
            return {"bytes": bytes(value), "path": None}
        if isinstance(value, Mapping) and (value.get("bytes") is not None
                                           or value.get("path") is not None):
            return {"bytes": value.get("bytes"), "path": value.get("path")}
        raise DataError(f"audio entry must be a path, bytes or {{'bytes', 'path'}}, "
                        f"got {type(value).__name__}")


def _builder(path: str, config: str | None = None, *, data_dir: str | None = None,
             cache_dir: str | None = None) -> datasets.DatasetBuilder:
    try:
        builder = datasets.load_dataset_builder(path, config, data_dir=data_dir,
                                                cache_dir=cache_dir)
    except Exception as e:  # hub, network and format errors all arrive as different types
        where = data_dir or path
        raise DataError(f"{where}: cannot open as a dataset ({type(e).__name__}: {e})") from e
    if isinstance(builder, FolderBasedBuilder) and issubclass(builder.BASE_FEATURE,
                                                              datasets.Audio):
        builder.BASE_FEATURE = _UndecodedAudio
    return builder


def _splits(builder: datasets.DatasetBuilder) -> list[str]:
    names = builder.config.data_files or builder.info.splits or {}
    return [str(s) for s in names]


def folder_splits(root: str | os.PathLike, *, cache_dir: str | None = None) -> list[str]:
    """The split names ``datasets`` finds in an audio folder (from directory names)."""
    return _splits(_builder("audiofolder", data_dir=_folder(root), cache_dir=cache_dir))


def _folder(root: str | os.PathLike) -> str:
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a directory")
    return root


def _undecoded(ds: Any) -> Any:
    """Cast every decoding ``Audio`` column of a (streaming) dataset to ``decode=False``."""
    for name, feature in (ds.features or {}).items():
        if isinstance(feature, datasets.Audio) and feature.decode:
            ds = ds.cast_column(name, datasets.Audio(decode=False))
    return ds


def _audio_column(features: Mapping[str, Any] | None, where: str) -> str:
    if features is None:  # some streamed formats do not declare features
        return "audio"
    cols = [k for k, f in features.items() if isinstance(f, datasets.Audio)]
    cols = cols or [k for k, f in features.items()
                    if isinstance(f, dict) and {"bytes", "path"} <= set(f)]
    cols = cols or [k for k in features if k == "audio"]
    if not cols:
        raise DataError(f"{where}: no audio column (an Audio feature, a {{bytes, path}} "
                        f"struct or a column named 'audio'); columns are {list(features)}")
    if len(cols) > 1:
        log.info("%s: audio columns %s, using %r", where, cols, cols[0])
    return cols[0]


class _RowMapper:
    """Turns dataset rows into records: the column mapping, ids and ``where`` strings."""

    def __init__(self, features: Mapping[str, Any] | None, audio_col: str, prefix: str,
                 where: str, root: str | None = None):
        self.audio_col, self.prefix, self.where, self.root = audio_col, prefix, where, root
        names = list(features or {})
        self.labels = {k: f for k, f in (features or {}).items()
                       if isinstance(f, datasets.ClassLabel)}
        self.mapped = {field: [c for c in cols if c in names] for field, cols in COLUMNS.items()}

    def __call__(self, row: Mapping[str, Any], index: int) -> dict[str, Any]:
        where = f"{self.where} row {index}"
        audio = row[self.audio_col]
        if isinstance(audio, Mapping):
            blob, path = audio.get("bytes"), audio.get("path") or ""
        else:
            blob, path = None, audio or ""
        if blob is None and not path:
            raise DataError(f"{where}: column {self.audio_col!r} has neither bytes nor path")
        fields: dict[str, Any] = {}
        used = {self.audio_col, "id"}
        for field in COLUMNS:
            for col in self.mapped[field] or [field]:
                if row.get(col) is not None:
                    fields[field] = row[col]
                    used.add(col)
                    break
        for col, value in row.items():
            if col in used or col in FIELDS or col in fields:
                continue
            if col in self.labels and isinstance(value, int) and value >= 0:
                fields[col] = self.labels[col].int2str(value)
            elif value is None or isinstance(value, str | int | float | bool):
                fields[col] = value
        if row.get("id") is not None:
            rid = f"{self.prefix}/{row['id']}"
        elif self.root and blob is None:
            rid = f"{self.prefix}/{os.path.splitext(os.path.relpath(path, self.root))[0]}"
        else:
            rid = f"{self.prefix}/{index}"
        if blob is not None:
            fields["audio_bytes"] = blob
        return make_record(where=where, id=rid, audio_path=path or rid, **fields)


class _InlineAudioSource(RecordSource):
    """A ``RecordSource`` whose inline audio bytes stay in the Arrow table until read."""

    def __init__(self, records: list[dict[str, Any]], name: str, *, dataset: Any,
                 audio_col: str, rows: Sequence[int], load_stats: SkipStats):
        super().__init__(records, name, load_stats=load_stats)
        self._audio, self._col = dataset.select_columns([audio_col]), audio_col
        self._rows = np.asarray(rows, np.int64)  # dataset row per record, -1: no bytes

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = operator.index(index)
        rec = super().__getitem__(index)
        row = int(self._rows[index])
        if row >= 0:
            rec["audio_bytes"] = self._audio[row][self._col]["bytes"]
        return rec

    def select(self, indices: Sequence[int], name: str | None = None) -> RecordSource:
        idx = [operator.index(i) for i in indices]
        out = _InlineAudioSource.__new__(_InlineAudioSource)
        RecordSource.__init__(out, [self._records[i] for i in idx], name or self.name,
                              load_stats=self.load_stats)
        out._audio, out._col, out._rows = self._audio, self._col, self._rows[idx]
        return out


def _map_dataset(ds: Any, mapper: _RowMapper, name: str, *, bad: BadInputConfig,
                 stats: SkipStats, probe_durations: bool) -> RecordSource:
    """Records of a map-style dataset, checked in batches so bytes never pile up."""
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    for start in range(0, len(ds), _BATCH):
        batch = ds[start:start + _BATCH]  # dict of columns
        n = len(batch[mapper.audio_col])
        pairs = []
        for j in range(n):
            rec = mapper({k: v[j] for k, v in batch.items()}, start + j)
            rec["_row"] = start + j
            pairs.append((rec, f"{mapper.where} row {start + j}"))
        for rec in check_rows(pairs, bad=bad, stats=stats, probe_durations=probe_durations):
            row = rec.pop("_row")
            rows.append(row if rec.pop("audio_bytes", None) is not None else -1)
            records.append(rec)
    require_some(records, len(ds), mapper.where, stats)
    if any(r >= 0 for r in rows):
        return _InlineAudioSource(records, name, dataset=ds, audio_col=mapper.audio_col,
                                  rows=rows, load_stats=stats)
    return RecordSource(records, name, load_stats=stats)


def _dangling_links(root: str) -> list[tuple[str, str]]:
    """``[(path, split)]`` of the dangling symbolic links with an audio suffix under
    ``root``: ``datasets`` lists files without them and without a word, so the loader
    reports them itself (as "missing", as everywhere else). The split is the one a
    directory on the path names, as ``datasets`` reads directory names ("train")."""
    from datasets.data_files import SPLIT_KEYWORDS
    from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if (os.path.splitext(name)[1].lower() not in AudioFolder.EXTENSIONS
                    or not os.path.islink(path) or os.path.exists(path)):
                continue
            parts = os.path.relpath(folder, root).lower().split(os.sep)
            split = next((str(s) for s, words in SPLIT_KEYWORDS.items()
                          if any(p in words for p in parts)), "train")
            found.append((path, split))
    return sorted(found)


def audio_folder(root: str | os.PathLike, split: str | None = None, *,
                 bad: BadInputConfig = BadInputConfig(), probe_durations: bool = True,
                 stats: SkipStats | None = None, cache_dir: str | None = None) -> RecordSource:
    """An HF audiofolder: audio files plus optional ``metadata.{csv,jsonl,parquet}``.

    Loaded with ``datasets``' audiofolder builder (splits from directory names such as
    ``train/`` and ``test/``; ``file_name`` column in the metadata). ``split=None``
    reads every split (each record gets a ``split`` field). Ids are ``<root name>/<id
    column>`` when the metadata has ``id``, else ``<root name>/<file path relative to
    root, no extension>``. Rows pointing at missing files, and dangling links to audio
    files, are bad input (see ``common.data.source_base``). ``cache_dir`` is datasets'
    cache for the file index.
    """
    root = _folder(root)
    stats = stats if stats is not None else SkipStats()
    builder = _builder("audiofolder", data_dir=root, cache_dir=cache_dir)
    splits = _splits(builder)
    if split is not None and split not in splits:
        raise DataError(f"{root}: audio folder has no split {split!r}; it has {splits}")
    for path, part in _dangling_links(root):
        if split is None or part == split:
            reject(path, "missing", f"broken symbolic link to {os.readlink(path)}", bad, stats)
    try:
        builder.download_and_prepare()
        parts = {s: builder.as_dataset(split=s) for s in ([split] if split else splits)}
    except Exception as e:  # metadata parse errors come from pandas/pyarrow/datasets
        raise DataError(f"{root}: cannot read audio folder ({type(e).__name__}: {e})") from e
    base = os.path.basename(root)
    records: list[dict[str, Any]] = []
    for name, ds in parts.items():
        ds = _undecoded(ds)
        audio_col = _audio_column(ds.features, root)
        mapper = _RowMapper(ds.features, audio_col, base, f"{root} (split {name})", root)
        part = _map_dataset(ds, mapper, name, bad=bad, stats=stats,
                            probe_durations=probe_durations)
        records += [{**rec, "split": name} if split is None else rec for rec in part]
    return RecordSource(records, f"{base}:{split or 'all'}", load_stats=stats)


def hf_dataset(name: str, split: str, config: str | None = None, *, streaming: bool = False,
               bad: BadInputConfig = BadInputConfig(), probe_durations: bool = True,
               stats: SkipStats | None = None, cache_dir: str | None = None,
               ) -> RecordSource | StreamingSource:
    """A hub dataset (``"org/name"``) or a local one (a directory of parquet/csv/audio
    files, or a ``save_to_disk`` directory), one split.

    Records: audio from the dataset's ``Audio`` column (or a ``{bytes, path}`` struct, or
    a path column named ``audio``); inline bytes become ``audio_bytes``; ids are
    ``<name>/<id column>`` or ``<name>/<row index>`` (stable for a given dataset
    revision). ``streaming=True`` returns a ``StreamingSource`` (iterable only; see its
    doc for what a pipeline can and cannot do with it); durations then come from a
    duration column only. Hub access needs a network; nothing here downloads otherwise.
    """
    stats = stats if stats is not None else SkipStats()
    local = os.path.exists(name)
    prefix = os.path.basename(os.path.abspath(name)) if local else name
    prefix += f":{config}" if config else ""
    where = f"{name}{f' ({config})' if config else ''} split {split}"
    if local and (os.path.exists(os.path.join(name, "state.json"))
                  or os.path.exists(os.path.join(name, "dataset_dict.json"))):
        ds = _from_disk(name, split)
        if streaming:
            ds = ds.to_iterable_dataset()
    else:
        builder = _builder(name, config, cache_dir=cache_dir)
        split = _resolve_split(name, split, _splits(builder))
        try:
            if streaming:
                ds = builder.as_streaming_dataset(split=split)
            else:
                builder.download_and_prepare()
                ds = builder.as_dataset(split=split)
        except Exception as e:  # download/format errors, whatever datasets raises
            raise DataError(f"{where}: cannot load ({type(e).__name__}: {e})") from e
    ds = _undecoded(ds)
    mapper = _RowMapper(ds.features, _audio_column(ds.features, where), prefix, where)
    if streaming:
        return StreamingSource(ds, f"{prefix}:{split}", _stream_record(mapper, bad, stats),
                               load_stats=stats)
    return _map_dataset(ds, mapper, f"{prefix}:{split}", bad=bad, stats=stats,
                        probe_durations=probe_durations)


def dataset_splits(name: str, config: str | None = None, *,
                   cache_dir: str | None = None) -> list[str] | None:
    """The split names of ``hf_dataset(name, ...)``'s dataset (None for a single saved
    ``Dataset``, which is whatever split it was saved as)."""
    if os.path.exists(os.path.join(name, "state.json")):
        return None
    if os.path.exists(os.path.join(name, "dataset_dict.json")):
        return list(datasets.load_from_disk(name))
    return _splits(_builder(name, config, cache_dir=cache_dir))


def has_split(splits: Sequence[str], split: str) -> bool:
    """Whether ``splits`` has ``split`` under its name or an alias ("dev" for "validation")."""
    return split in splits or any(a in splits for a in _SPLIT_ALIASES.get(split, ()))


def _resolve_split(name: str, split: str, splits: Sequence[str]) -> str:
    """``split``, or the dataset's own spelling of it ("dev" for "validation")."""
    if not splits or split in splits:
        return split
    for alias in _SPLIT_ALIASES.get(split, ()):
        if alias in splits:
            log.info("%s: reading split %r as %r", name, alias, split)
            return alias
    raise DataError(f"{name}: no split {split!r}; it has {list(splits)}")


def _from_disk(path: str, split: str) -> datasets.Dataset:
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        return loaded[_resolve_split(path, split, list(loaded))]
    return loaded  # a single saved Dataset is whatever split it was saved as


def _stream_record(mapper: _RowMapper, bad: BadInputConfig, stats: SkipStats
                   ) -> Callable[[Mapping[str, Any], int], dict[str, Any] | None]:
    def to_record(example: Mapping[str, Any], index: int) -> dict[str, Any] | None:
        rec = mapper(example, index)
        kept = check_rows([(rec, f"{mapper.where} row {index}")], bad=bad, stats=stats,
                          probe_durations=False)
        return kept[0] if kept else None

    return to_record
