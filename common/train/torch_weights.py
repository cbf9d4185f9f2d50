"""Read PyTorch checkpoints into numpy without importing torch.

``load_torch_state_dict(path)`` returns ``{name: np.ndarray}`` for

- ``.safetensors`` files (always little-endian; parsed by the ``safetensors`` package),
- ``torch.save`` zip archives (``.bin``, ``.pt``, ``.pth``, ``.ckpt``; torch >= 1.6):
  ``<archive>/data.pkl`` is a pickle whose tensors point at raw storages
  ``<archive>/data/<key>`` through persistent ids.

The pickle is read by a restricted unpickler: only the globals a state dict needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2/v3``,
``_rebuild_parameter[_with_state]``, storage classes such as ``torch.FloatStorage``,
``torch.UntypedStorage`` and dtypes such as ``torch.uint16``) are honoured, by numpy code
of this module. Nothing is ever imported: any other global (an optimizer's or Lightning's
hyper-parameter classes, ``pathlib`` paths, ...) unpickles as an inert placeholder, and
one that ends up among the returned weights is an error naming it.

Tensors are rebuilt from (storage, offset, size, stride) in elements with ``as_strided``
and copied, so views sharing a storage and non-contiguous tensors come out as torch
shows them, each an independent C-contiguous array. dtypes: float16/32/64, int8-64,
uint8-64, bool, complex64/128 as numpy's; bfloat16 and the float8 types as ``ml_dtypes``
(``ml_dtypes.bfloat16`` etc., which jax takes directly; ``.astype(np.float32)`` is exact).
"""

from __future__ import annotations

import collections
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import safetensors


class TorchWeightsError(ValueError):
    """A checkpoint that cannot be read as a name -> tensor mapping; the message names it."""


# Legacy storage classes (what torch still pickles for the classic dtypes) -> numpy.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,  # bytes; _rebuild_tensor_v3 names the dtype
}
# torch dtypes by attribute name; v3 tensors (uint16/32/64, float8) pickle them as globals.
_TORCH_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "uint16": np.uint16,
    "uint32": np.uint32, "uint64": np.uint64, "bool": np.bool_,
    "complex64": np.complex64, "complex128": np.complex128,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "float8_e8m0fnu": ml_dtypes.float8_e8m0fnu,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
    "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
    "C64": np.complex64, "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E8M0": ml_dtypes.float8_e8m0fnu,
}


def load_torch_state_dict(path: str | Path, key: str | None = None) -> dict[str, np.ndarray]:
    """``{name: array}`` from a ``.safetensors`` file or a ``torch.save`` zip archive.

    ``key`` selects an entry of the top-level mapping first (``"state_dict"`` of a
    Lightning checkpoint, ``"model"``, ...). Nested mappings are flattened with ``"."``
    (``{"enc": {"w": t}}`` -> ``{"enc.w": t}``). Anything but tensors and mappings of
    tensors is a ``TorchWeightsError`` that lists the top-level keys.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    elif path.suffix == ".safetensors" or head[8:9] == b"{":
        obj = _load_safetensors(path)
    elif head[:1] == b"\x80" or tarfile.is_tarfile(path):  # torch <= 0.3 wrote tar
        raise TorchWeightsError(
            f"{path}: a legacy torch.save file (torch < 1.6, or a bare pickle), which this "
            "reader does not take; re-save it with a newer torch: "
            "torch.save(torch.load(old, weights_only=False), new)")
    else:
        raise TorchWeightsError(
            f"{path}: neither a torch.save zip archive nor a safetensors file "
            f"(starts with {head[:8]!r})")
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise TorchWeightsError(
                f"{path}: no top-level key {key!r}; top-level keys: {_keys(obj)}")
        obj = obj[key]
    flat: dict[str, np.ndarray] = {}
    _flatten(obj, "", flat, path, top=obj)
    return flat


def _flatten(obj, prefix: str, out: dict, path: Path, top) -> None:
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
        return
    if not isinstance(obj, dict):
        what = obj.describe() if isinstance(obj, _Opaque) else type(obj).__name__
        raise TorchWeightsError(
            f"{path}: not a flat name -> tensor mapping: {prefix or '<top level>'!r} is "
            f"{what}; top-level keys: {_keys(top)} (pick one with key=...)")
    for name, value in obj.items():
        _flatten(value, f"{prefix}.{name}" if prefix else str(name), out, path, top)


def _keys(obj) -> list[str] | str:
    return [str(k) for k in obj] if isinstance(obj, dict) else f"none ({type(obj).__name__})"


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    # safetensors.numpy.load_file (0.8) fails on BF16 and F8 ("data type 'bfloat16' not
    # understood"), so the package parses and validates the file and the dtype is ours.
    try:
        entries = safetensors.deserialize(path.read_bytes())
    except Exception as e:  # the Rust parser's SafetensorError is not importable by name
        raise TorchWeightsError(f"{path}: not a valid safetensors file: {e}") from e
    out = {}
    for name, info in entries:
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise TorchWeightsError(f"{path}: tensor {name!r} has dtype {info['dtype']}, "
                                    f"which has no numpy equivalent here")
        arr = np.frombuffer(info["data"], _SAFETENSORS_DTYPES[info["dtype"]])
        if sys.byteorder == "big":
            arr = arr.byteswap()
        out[name] = arr.reshape(info["shape"])
    return out


class _Opaque:
    """Stand-in for a global outside the allow-list: records its arguments, runs nothing."""

    name = "?"

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, k, v):  # dict subclasses unpickle through SETITEMS
        pass

    def append(self, v):  # list subclasses through APPENDS
        pass

    def extend(self, vs):
        pass

    @classmethod
    def describe(cls) -> str:
        return f"an object of {cls.name}, a global this reader does not load"


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


class _TorchDtype:
    def __init__(self, name: str):
        self.name, self.np = name, _TORCH_DTYPES.get(name)


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
        if not pkls:
            raise TorchWeightsError(f"{path}: a zip file without data.pkl, not a torch.save "
                                    "archive")
        prefix = pkls[0][: -len("data.pkl")]
        if prefix + "constants.pkl" in names:
            raise TorchWeightsError(
                f"{path}: a TorchScript archive (torch.jit.save); load it with "
                "torch.jit.load and torch.save its state_dict() instead")
        byteorder = (zf.read(prefix + "byteorder").decode()
                     if prefix + "byteorder" in names else "little")
        storages: dict[str, np.ndarray] = {}

        def storage(saved_id) -> np.ndarray:
            kind, storage_type, skey, _location, numel = saved_id
            if kind != "storage" or not isinstance(storage_type, _StorageType):
                raise TorchWeightsError(f"{path}: unexpected persistent id {saved_id!r}")
            if skey not in storages:
                dtype = storage_type.dtype
                raw = zf.read(f"{prefix}data/{skey}")
                if len(raw) < numel * dtype.itemsize:
                    raise TorchWeightsError(f"{path}: storage {skey} is truncated")
                arr = np.frombuffer(raw, dtype, count=numel)
                storages[skey] = arr.byteswap() if byteorder != sys.byteorder else arr
            return storages[skey]

        return _Unpickler(zf.open(pkls[0]), path, storage).load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, storage):
        super().__init__(file)
        self.path, self.storage = path, storage

    def persistent_load(self, saved_id):
        return self.storage(saved_id)

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            return self._rebuild_tensor
        if module == "torch._utils" and name.startswith("_rebuild_parameter"):
            return lambda data, *_: data  # (data, requires_grad, hooks[, state])
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        return type(name, (_Opaque,), {"name": f"{module}.{name}"})

    def _rebuild_tensor(self, storage, offset, size, stride, _grad, _hooks, *rest):
        """v2: ``(storage, offset, size, stride, requires_grad, hooks[, metadata])``;
        v3 adds the dtype after ``hooks`` and its storage is bytes. All in elements."""
        size, stride = tuple(size), tuple(stride)
        if not isinstance(storage, np.ndarray) or len(size) != len(stride):
            raise TorchWeightsError(f"{self.path}: malformed tensor record")
        if rest and isinstance(rest[0], _TorchDtype):
            if rest[0].np is None:
                raise TorchWeightsError(
                    f"{self.path}: a tensor of torch.{rest[0].name}, which has no numpy "
                    "equivalent here")
            storage = storage.view(rest[0].np)
        if 0 in size:
            return np.zeros(size, storage.dtype)
        # as_strided does not check bounds: a corrupt record must not read past the storage.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if offset < 0 or min(stride, default=0) < 0 or last >= storage.size:
            raise TorchWeightsError(f"{self.path}: a tensor reaches outside its storage")
        item = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[s * item for s in stride], writeable=False)
        return view.copy()
