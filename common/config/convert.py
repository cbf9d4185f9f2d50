"""Plain mappings (YAML, JSON, command-line strings) to typed dataclasses and back.

dacite builds the dataclasses and checks every value against its annotation. The glue
here adds what dacite leaves to its user: dotted keys (``{"model.dim": 8}``) and tyro's
hyphenated spellings, type hooks for the conversions configs rely on (lists -> tuples,
YAML's ``"1e-3"`` -> float, enums by name or value, numpy dtypes, paths, command-line
strings), and ``ConfigError`` messages that name the dotted field and, for Literal and
Enum fields, the allowed values. Hooks raise dacite's field errors so that dacite
prefixes the field path as an error bubbles up through nested dataclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import functools
import keyword
import os
import pathlib
import types
import typing
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import dacite
import numpy as np

Config = TypeVar("Config")


class ConfigError(ValueError):
    """An invalid config value, an unknown field, or an unreadable config file.

    ``field``: the dotted field it concerns, if one; ``reason``: the message without the
    field and value (e.g. ``"allowed values: 'relu', 'gelu'"``), for callers that word
    their own message.
    """

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.field = field
        self.reason = reason or message


# ------------------------------------------------------------------- public entry points


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-safe nested dict of a config (tuples -> lists, dtypes/enums/paths -> str)."""
    if not _is_dataclass_instance(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _to_jsonable(cfg, "")


def config_from_dict(config_cls: type[Config], d: Mapping[str, Any], *, strict: bool = True
                     ) -> Config:
    """Inverse of ``config_to_dict``: values are checked against the annotations.

    Missing keys take the dataclass defaults; unknown keys raise ``ConfigError``
    (or are ignored when ``strict=False``).
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(d).__name__}")
    with _config_errors(config_cls):
        return _from_mapping(config_cls, d, _dacite_config(config_cls, strict, False))


def apply_overrides(cfg: Config, overrides: Mapping[str, Any], *, strict: bool = True) -> Config:
    """``cfg`` with the values of a (nested or dotted-key) mapping replaced."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(overrides).__name__}")
    if not overrides:
        return cfg
    # The overrides merged into cfg's own field values and the whole rebuilt: sections
    # nobody overrode pass through as the same instances, and dacite checks the rest.
    cls = type(cfg)
    with _config_errors(cls):
        return _from_mapping(cls, _merge(cfg, overrides), _dacite_config(cls, strict, False))


def replace_path(cfg: Config, path: str, value: Any) -> Config:
    """``replace_path(cfg, "model.dim", 64)``: dotted ``dataclasses.replace``."""
    return apply_overrides(cfg, {path: value})


def coerce_values(types_: Mapping[str, Any], values: Mapping[str, Any], *,
                  from_text: bool = False) -> dict[str, Any]:
    """``values`` checked and converted by ``types_`` (name -> annotation) as config fields.

    ``from_text``: the values are command-line strings, also parsed into the annotated
    type: ``"3"`` -> 3, ``"true"``/``"yes"``/``"on"``/``"1"`` -> True, ``"none"``/``"null"``/
    ``""`` -> None where None is allowed, ``"1,2"`` -> ``(1, 2)`` for tuples and lists.
    Names missing from ``types_`` take any value. Raises ``ConfigError`` whose ``field``
    is the name.
    """
    for name in values:
        if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
            raise ConfigError(f"{name!r} is not a valid name", field=str(name))
    cls = _record(tuple((name, types_.get(name, Any)) for name in values))
    with _config_errors(cls):
        record = _from_mapping(cls, values, _dacite_config(cls, True, from_text))
    return {name: getattr(record, name) for name in values}


# ------------------------------------------------------------------------ dacite glue


class _FieldError(dacite.DaciteFieldError):
    """A field's value is invalid for ``reason``; dacite prefixes the path on the way up."""

    def __init__(self, reason: str, field_path: str | None = None):
        super().__init__(field_path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field_path}: {self.reason}"


class _UnknownField(dacite.DaciteFieldError):
    """``key`` is no field of ``cls`` (dacite's own UnexpectedDataError carries no path)."""

    def __init__(self, cls: type, key: str):
        super().__init__(key)
        self.cls, self.key = cls, key


@contextlib.contextmanager
def _config_errors(cls: type) -> Iterator[None]:
    """dacite's errors (and ours, raised as dacite's) as ``ConfigError`` about ``cls``."""
    try:
        yield
    except dacite.DaciteError as e:
        raise _config_error(e, cls) from e


def _config_error(e: dacite.DaciteError, cls: type) -> ConfigError:
    path = getattr(e, "field_path", None)
    if isinstance(e, _UnknownField):
        fields = list(_init_fields(e.cls))
        close = difflib.get_close_matches(e.key, fields, n=1)
        hint = f" (did you mean '{path[:-len(e.key)]}{close[0]}'?)" if close else ""
        return ConfigError(f"unknown field '{path}'{hint}; {e.cls.__name__} has: "
                           + ", ".join(fields), field=path)
    if isinstance(e, _FieldError):  # a hook's verdict, or a __post_init__ check
        return ConfigError(f"{path or cls.__name__}: {e.reason}", field=path, reason=e.reason)
    if isinstance(e, dacite.WrongTypeError):
        reason = _expected(e.field_type)
        return ConfigError(f"{path}: invalid value {e.value!r}, {reason}", field=path,
                           reason=reason)
    if isinstance(e, dacite.MissingValueError):
        return ConfigError(f"missing required field(s): {[path]}", field=path)
    return ConfigError(str(e), field=path)


def _expected(tp: Any) -> str:
    """What a field of type ``tp`` takes, for an error message."""
    args = typing.get_args(tp)
    if _is_union(tp) and len(args) == 2 and type(None) in args:  # name X of ``X | None``
        return _expected(next(a for a in args if a is not type(None)))
    if typing.get_origin(tp) is Literal:
        return "allowed values: " + ", ".join(repr(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "allowed values: " + ", ".join(repr(m.name) for m in tp)
    name = str(tp) if typing.get_args(tp) else getattr(tp, "__name__", str(tp))
    return "expected " + name.replace("typing.", "")


def _from_mapping(cls: type, data: Mapping[str, Any], config: dacite.Config) -> Any:
    data = _normalise(cls, data)
    try:
        return dacite.from_dict(cls, data, config)
    except dacite.UnexpectedDataError as e:
        raise _UnknownField(cls, next(k for k in data if k in e.keys)) from None
    except (ValueError, TypeError) as e:  # __post_init__ checks; dacite's errors are neither
        raise _FieldError(str(e)) from e


def _normalise(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of ``d`` as ``cls``'s field names: dotted keys nested (``{"model.dim": 8}`` ->
    ``{"model": {"dim": 8}}``), tyro's hyphens read as underscores."""
    fields = _init_fields(cls)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise _FieldError("keys must be strings", str(key))
        head, _, tail = key.partition(".")
        if head not in fields and head.replace("-", "_") in fields:
            head = head.replace("-", "_")
        if tail:
            value = {tail: value}
        if head in out and isinstance(out[head], Mapping) and isinstance(value, Mapping):
            out[head] = {**out[head], **value}  # its own level nests the rest
        elif head in out:
            raise _FieldError("given more than once", head)
        else:
            out[head] = value
    return out


def _merge(cfg: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg``'s field values with ``overrides`` in; overridden sections become mappings
    over their own values (recursively), so that only what is named changes."""
    values = {name: getattr(cfg, name) for name in _init_fields(type(cfg))}
    for key, value in _normalise(type(cfg), overrides).items():
        current = values.get(key)
        if _is_dataclass_instance(current) and isinstance(value, Mapping):
            try:
                value = _merge(current, value)
            except dacite.DaciteFieldError as e:
                e.update_path(key)
                raise
        values[key] = value
    return values


@functools.cache
def _record(fields: tuple[tuple[str, Any], ...]) -> type:
    """A dataclass with these (name, annotation) fields, for ``coerce_values``."""
    return dataclasses.make_dataclass("Values", fields)


@functools.cache
def _dacite_config(root: type, strict: bool, from_text: bool) -> dacite.Config:
    """dacite's settings for ``root``: a type hook for every type reachable from it that
    needs one (dacite looks hooks up by exact type, so the tree is walked once here)."""
    hooks: dict[Any, Callable[[Any], Any]] = {}
    config = dacite.Config(type_hooks=hooks, strict=strict)
    seen, todo = set(), [root]
    while todo:
        tp = todo.pop()
        if tp in seen:
            continue
        seen.add(tp)
        hook = _hook(tp, config, from_text)
        if hook is not None:
            hooks[tp] = hook
        if _is_dataclass_type(tp):
            todo.extend(_hints(tp).values())
        elif typing.get_origin(tp) is not Literal:  # Callable's [args] list is no type
            todo.extend(a for a in typing.get_args(tp) if isinstance(a, Hashable))
    return config


def _hook(tp: Any, config: dacite.Config, from_text: bool) -> Callable[[Any], Any] | None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_dataclass_type(tp):  # built here so that dotted keys and errors get our glue
        return lambda v: _from_mapping(tp, v, config) if isinstance(v, Mapping) else v
    if origin is Literal:
        return functools.partial(_literal, tp)
    if origin in (tuple, list, Sequence):
        return functools.partial(_sequence, tp, from_text)
    if _is_union(tp) and type(None) in args and from_text:
        return lambda v: None if isinstance(v, str) and v.lower() in ("none", "null", "") else v
    if not isinstance(tp, type):
        return None
    if issubclass(tp, enum.Enum):
        return functools.partial(_enum, tp)
    if tp in (bool, int, float):
        return functools.partial(_NUMBER[tp], from_text=from_text)
    if issubclass(tp, os.PathLike | pathlib.PurePath):
        return lambda v: tp(v) if isinstance(v, str | os.PathLike) else v
    if tp is np.dtype or issubclass(tp, np.dtype):
        return _dtype
    return None


def _literal(tp: Any, v: Any) -> Any:
    for a in typing.get_args(tp):
        if v == a and type(v) is type(a):  # so that 1 is not True
            return a
    if isinstance(v, str):  # enum members in a Literal are saved by name/value
        for a in typing.get_args(tp):
            if isinstance(a, enum.Enum) and v in (a.name, a.value):
                return a
    raise dacite.WrongTypeError(field_type=tp, value=v)


def _sequence(tp: Any, from_text: bool, v: Any) -> Any:
    """YAML/JSON lists as tuples (and back for ``list`` fields); tuple lengths checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if from_text and isinstance(v, str):
        v = [s.strip() for s in v.split(",")] if v.strip() else []
    if not isinstance(v, list | tuple):  # dacite would iterate a string or a mapping
        raise dacite.WrongTypeError(field_type=tp, value=v)
    if origin is list:
        return list(v)
    if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(v):
        raise _FieldError(f"expected {len(args)} values, got {len(v)}")
    return tuple(v)


def _enum(tp: type[enum.Enum], v: Any) -> Any:
    if isinstance(v, tp):
        return v
    for member in tp:
        if v in (member.name, member.value):
            return member
    raise dacite.WrongTypeError(field_type=tp, value=v)


def _bool(v: Any, *, from_text: bool) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if from_text and isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off"):
            return False
    return v  # anything else fails dacite's check (YAML's own booleans are bools)


def _int(v: Any, *, from_text: bool) -> Any:
    if isinstance(v, bool | np.bool_):  # a bool is an int to isinstance, not to a config
        raise dacite.WrongTypeError(field_type=int, value=v)
    if isinstance(v, np.integer):
        return int(v)
    if from_text and isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            raise dacite.WrongTypeError(field_type=int, value=v) from None
    return v


def _float(v: Any, *, from_text: bool) -> Any:
    del from_text  # strings are parsed either way: YAML 1.1 reads "1e-3" (no dot) as one
    if isinstance(v, bool | np.bool_):
        raise dacite.WrongTypeError(field_type=float, value=v)
    if isinstance(v, int | float | np.integer | np.floating):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise dacite.WrongTypeError(field_type=float, value=v) from None
    return v


_NUMBER = {bool: _bool, int: _int, float: _float}


def _dtype(v: Any) -> Any:
    try:
        return np.dtype(v)
    except TypeError:
        raise dacite.WrongTypeError(field_type=np.dtype, value=v) from None


# ---------------------------------------------------------------------------- helpers


def _is_dataclass_instance(x: Any) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolves string annotations (``from __future__ import annotations``).
    return typing.get_type_hints(cls)


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _to_jsonable(x: Any, path: str) -> Any:
    if _is_dataclass_instance(x):
        return {n: _to_jsonable(getattr(x, n), _join(path, n)) for n in _init_fields(type(x))}
    if isinstance(x, enum.Enum):
        return x.value if isinstance(x.value, str) else x.name
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float | np.floating):
        return float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, tuple | list):
        return [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, Mapping):
        return {str(k): _to_jsonable(v, _join(path, str(k))) for k, v in x.items()}
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    dtype = _as_dtype(x)
    if dtype is not None:
        return dtype.name
    raise TypeError(f"config field {path or '<root>'}: {type(x).__name__} is not JSON-safe")


def _as_dtype(x: Any) -> np.dtype | None:
    """np/jnp dtypes and scalar types (``jnp.bfloat16``, ``np.float32``) as np.dtype."""
    if isinstance(x, np.dtype):
        return x
    if isinstance(x, type) and issubclass(x, np.generic):
        return np.dtype(x)
    inner = getattr(x, "dtype", None)  # jnp.float32 and friends are not np types
    if isinstance(inner, np.dtype) and callable(x):
        return inner
    return None
