"""ArrayRecord feature shards: example serialisation, the shard files, the index, a reader.

Layout of a preprocessed directory (written by ``common.data.preprocess``)::

    out/plan.json                              what the run computes (checked on resume)
    out/shard-00003-of-00010.array_record      the examples of source indices [3S, 4S)
    out/shard-00003-of-00010.json              its sidecar: count, ids, skips, seconds
    out/index.json                             totals, per-shard counts, feature specs

A shard is written to ``<name>.array_record.tmp``, renamed, and only then gets its
sidecar; a shard counts as finished exactly when its sidecar exists, so an interrupted
run leaves nothing that a rerun could count twice.

An example is a flat dict of ``str -> np.ndarray | np scalar | str | bytes | int | float |
bool | None``, stored without pickle: ``b"TRCX"``, a little-endian uint32 header length,
a JSON header (per key: its kind, and for arrays dtype, shape, offset, size), then the
raw array buffers, each aligned to 16 bytes. Arrays round-trip bit for bit with their
dtype (byte order included; ml_dtypes types such as bfloat16 by name); ints, floats
(NaN/Inf included), strings and bools round-trip as Python values.

Records are written with ``group_size:1`` so that each one is read on its own (grain's
random access needs it).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsIndex

import numpy as np

MAGIC = b"TRCX"
INDEX_FILE = "index.json"
PLAN_FILE = "plan.json"
FORMAT = "trc-shards/1"
WRITER_OPTIONS = "group_size:1"
_ALIGN = 16
_HEAD = struct.Struct("<4sI")

Example = Mapping[str, Any]


class ShardError(ValueError):
    """A shard directory, file or record that is missing, inconsistent or corrupt."""


# ---------------------------------------------------------------------- serialisation


def _dtype_name(dt: np.dtype, key: str) -> str:
    if dt.hasobject:
        raise TypeError(f"example key {key!r}: object arrays cannot be serialised")
    if dt.kind == "V":
        if dt.names is None and dt.type.__module__.startswith("ml_dtypes"):
            return dt.name  # bfloat16 & co: their .str is an anonymous '<V2'
        raise TypeError(f"example key {key!r}: structured/void dtype {dt} is not supported")
    return dt.str  # keeps the byte order: '<f4', '>i2', '|b1', '<U5'


def _dtype_from(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # jax's dependency; only needed for bfloat16-like dtypes

        return np.dtype(getattr(ml_dtypes, name))


def serialize(example: Example) -> bytes:
    """Bytes of a flat example dict (see the module doc for the format).

    Raises ``TypeError`` naming the key for a value that cannot be stored (object
    arrays, nested containers).
    """
    fields: dict[str, dict[str, Any]] = {}
    buffers: list[bytes] = []
    offset = 0
    for key, value in example.items():
        if not isinstance(key, str):
            raise TypeError(f"example keys must be str, got {key!r}")
        if value is None:
            fields[key] = {"k": "none"}
        elif isinstance(value, bool):  # before int: bool is an int subclass
            fields[key] = {"k": "bool", "v": value}
        elif isinstance(value, int):
            fields[key] = {"k": "int", "v": value}
        elif isinstance(value, float):
            fields[key] = {"k": "float", "v": value}
        elif isinstance(value, str):
            fields[key] = {"k": "str", "v": value}
        elif isinstance(value, bytes | bytearray | memoryview | np.ndarray | np.generic):
            if isinstance(value, bytes | bytearray | memoryview):
                kind, blob, meta = "bytes", bytes(value), {}
            else:
                arr = np.asarray(value)
                kind = "scalar" if isinstance(value, np.generic) else "array"
                meta = {"dtype": _dtype_name(arr.dtype, key), "shape": list(arr.shape)}
                blob = arr.tobytes(order="C")
            pad = -offset % _ALIGN
            if pad:
                buffers.append(b"\0" * pad)
                offset += pad
            fields[key] = {"k": kind, **meta, "o": offset, "n": len(blob)}
            buffers.append(blob)
            offset += len(blob)
        else:
            raise TypeError(f"example key {key!r}: cannot serialise {type(value).__name__} "
                            "(use numpy arrays, str, bytes, int, float, bool or None)")
    # ensure_ascii keeps lone surrogates and every code point exact through JSON.
    header = json.dumps(fields, separators=(",", ":")).encode()
    head = _HEAD.pack(MAGIC, len(header)) + header
    head += b"\0" * (-len(head) % _ALIGN)
    return head + b"".join(buffers)


def deserialize(blob: bytes, *, copy: bool = True) -> dict[str, Any]:
    """The example dict of ``serialize``'s bytes.

    ``copy=False`` returns read-only arrays that view ``blob`` (no copy; they keep the
    whole record alive); the default returns writable arrays of their own.
    """
    if len(blob) < _HEAD.size:
        raise ShardError(f"record of {len(blob)} bytes is too short to be an example")
    magic, n = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise ShardError(f"record does not start with {MAGIC!r} (got {bytes(magic)!r})")
    start = _HEAD.size + n
    fields = json.loads(bytes(blob[_HEAD.size:start]))
    data = memoryview(blob)[start + (-start % _ALIGN):]
    out: dict[str, Any] = {}
    for key, f in fields.items():
        kind = f["k"]
        if kind == "none":
            out[key] = None
        elif kind in ("bool", "int", "float", "str"):
            out[key] = f["v"]
        elif kind == "bytes":
            out[key] = bytes(data[f["o"]:f["o"] + f["n"]])
        else:
            arr = np.frombuffer(data[f["o"]:f["o"] + f["n"]], dtype=_dtype_from(f["dtype"]))
            arr = arr.reshape(f["shape"])
            if copy:
                arr = arr.copy()
            out[key] = arr[()] if kind == "scalar" else arr
    return out


# ------------------------------------------------------------------------ file layout


def shard_name(shard: int, num_shards: int) -> str:
    """``shard-00003-of-00010`` (no extension)."""
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a per-process temporary file, fsynced, then renamed)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ShardError(f"{path}: cannot read JSON ({e})") from e


def num_records(path: str | Path) -> int:
    """Record count of an ArrayRecord file (reads its footer only)."""
    from array_record.python import array_record_module

    try:
        reader = array_record_module.ArrayRecordReader(str(path))
    except (OSError, RuntimeError, ValueError) as e:
        raise ShardError(f"{path}: not a readable ArrayRecord file ({e})") from e
    try:
        return int(reader.num_records())
    finally:
        reader.close()


class ShardWriter:
    """Writes one shard's examples to ``<name>.array_record.tmp``; ``commit`` publishes it.

    ``commit`` closes the file, fsyncs it and renames it to ``<name>.array_record``;
    leaving the ``with`` block by an exception closes and deletes the temporary file.
    The caller writes the sidecar after ``commit`` (that is what marks the shard done).
    """

    def __init__(self, path: str | Path):
        from array_record.python import array_record_module

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.tmp.unlink(missing_ok=True)
        self._writer = array_record_module.ArrayRecordWriter(str(self.tmp), WRITER_OPTIONS)
        self.count = 0

    def write(self, example: Example | bytes) -> None:
        blob = example if isinstance(example, bytes) else serialize(example)
        self._writer.write(blob)
        self.count += 1

    def commit(self) -> Path:
        self._writer.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer.is_open():
            self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


# ----------------------------------------------------------------------------- reader


class ShardSource:
    """Random access to the examples of a preprocessed directory (grain-compatible).

    ``ShardSource(dir)[i]`` is the deserialised example dict ``i`` in shard order. Use
    it as ``grain.MapDataset.source(ShardSource(dir))``. On opening, ``index.json`` is
    checked against the files: each listed shard must exist and hold the listed number
    of records, else ``ShardError`` names the file.

    Attributes:
      index: the parsed ``index.json``.
      features: ``{key: {"shape": [...] (None = variable), "dtype": str}}``.
    """

    def __init__(self, directory: str | Path, *, copy: bool = True):
        from grain.sources import ArrayRecordDataSource

        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE
        if not index_path.exists():
            raise ShardError(f"{index_path}: no index (run `python -m common.data.preprocess "
                             "... --finalize` once every shard is written)")
        self.index = read_json(index_path)
        if self.index.get("format") != FORMAT:
            raise ShardError(f"{index_path}: format {self.index.get('format')!r}, "
                             f"expected {FORMAT!r}")
        self.features: dict[str, dict[str, Any]] = self.index["features"]
        self._copy = copy
        paths, total = [], 0
        for shard in self.index["shards"]:
            path = self.directory / shard["file"]
            if not path.exists():
                raise ShardError(f"{path}: listed in {index_path} but missing")
            n = num_records(path)
            if n != shard["count"]:
                raise ShardError(f"{path}: holds {n} records but {index_path} says "
                                 f"{shard['count']}")
            if n:  # the "[0:n]" form spares the data source from reopening every file
                paths.append(f"{path}[0:{n}]")
            total += n
        if total != self.index["count"]:
            raise ShardError(f"{index_path}: shards hold {total} records but 'count' says "
                             f"{self.index['count']}")
        self._len = total
        self._source = ArrayRecordDataSource(paths) if paths else None

    def __len__(self) -> int:
        return self._len

    def _key(self, i: SupportsIndex) -> int:
        k = i.__index__()
        if k < 0:
            k += self._len
        if not 0 <= k < self._len:
            raise IndexError(f"index {i.__index__()} out of range for {self._len} examples "
                             f"in {self.directory}")
        return k

    def __getitem__(self, i: SupportsIndex) -> dict[str, Any]:
        return deserialize(self._source[self._key(i)], copy=self._copy)

    def __getitems__(self, keys: Sequence[SupportsIndex]) -> list[dict[str, Any]]:
        blobs = self._source.__getitems__([self._key(k) for k in keys]) if keys else []
        return [deserialize(b, copy=self._copy) for b in blobs]

    def __repr__(self) -> str:
        return f"ShardSource({str(self.directory)!r}, {self._len} examples)"
