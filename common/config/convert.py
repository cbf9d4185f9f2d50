"""Plain mappings (YAML, JSON, command-line strings) to typed dataclasses and back.

dacite builds the dataclasses and checks each value against its annotation, with the field's
path. The glue adds dotted and hyphenated keys, a few conversions (lists -> tuples, YAML's
``"1e-3"`` -> float, enums by name or value, paths, dtypes, command-line strings) and
``ConfigError`` messages with the allowed values and a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import keyword
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import dacite
import numpy as np
from dacite.types import is_optional

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


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-safe nested dict of a config (tuples -> lists, dtypes/enums/paths -> str)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return json.loads(json.dumps(cfg, default=_jsonable))


def config_from_dict(config_cls: type[Config], d: Mapping[str, Any], *, strict: bool = True
                     ) -> Config:
    """Inverse of ``config_to_dict``: values are checked against the annotations.

    Missing keys take the dataclass defaults; unknown keys raise ``ConfigError``
    (or are ignored when ``strict=False``).
    """
    return _build(config_cls, d, strict)


def apply_overrides(cfg: Config, overrides: Mapping[str, Any], *, strict: bool = True) -> Config:
    """``cfg`` with the values of a (nested or dotted-key) mapping replaced."""
    if isinstance(overrides, Mapping) and not overrides:
        return cfg
    return _build(type(cfg), overrides, strict, base=cfg)


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
    cls = dataclasses.make_dataclass("Values", [(n, types_.get(n, Any)) for n in values])
    return dict(vars(_build(cls, values, True, text=from_text)))


class _FieldError(dacite.DaciteFieldError):
    """``reason`` about a field (or ``key``, unknown to ``cls``); dacite prefixes the path."""

    def __init__(self, reason: str, key: str | None = None, cls: type | None = None):
        super().__init__(key)
        self.reason, self.cls = reason, cls


def _build(cls: type, data: Any, strict: bool, *, text: bool = False, base: Any = None) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
    try:
        return _Hooks(strict, text).build(cls, data, base)
    except dacite.DaciteError as e:
        path, reason = getattr(e, "field_path", None), getattr(e, "reason", None)
        if isinstance(e, _FieldError) and e.cls:  # an unknown key
            names, key = list(_init_fields(e.cls)), path.rpartition(".")[2]
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{path[:-len(key)]}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown field '{path}'{hint}; {e.cls.__name__} has: "
                              + ", ".join(names), field=path) from e
        if isinstance(e, dacite.WrongTypeError):
            tp, args = e.field_type, typing.get_args(e.field_type)
            if is_optional(tp) and len(args) == 2:  # name X of ``X | None``
                tp = next(a for a in args if a is not type(None))
            if typing.get_origin(tp) is Literal or isinstance(tp, enum.EnumMeta):
                allowed = (getattr(a, "name", a) for a in typing.get_args(tp) or tp)
                reason = "allowed values: " + ", ".join(map(repr, allowed))
            else:
                name = str(tp) if typing.get_args(tp) else getattr(tp, "__name__", str(tp))
                reason = "expected " + name.replace("typing.", "")
            raise ConfigError(f"{path}: invalid value {e.value!r}, {reason}", field=path,
                              reason=reason) from e
        message = f"{path or cls.__name__}: {reason}" if reason else str(e)  # dacite's names it
        raise ConfigError(message, field=path, reason=reason) from e


class _Hooks(dict):
    """dacite's ``type_hooks`` chosen by kind of type (dacite asks ``tp in hooks``, then calls
    ``hooks[tp](value)``) rather than listed type by type. A hook converts what it can and
    leaves the rest to dacite's type check, which reports the value and its field path."""

    def __init__(self, strict: bool, text: bool):
        super().__init__()
        self.strict, self.text = strict, text
        self.config = dacite.Config(type_hooks=self, strict=strict)

    def __contains__(self, tp: object) -> bool:
        return self[tp] is not None

    def __getitem__(self, tp: Any) -> Callable[[Any], Any] | None:
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # dotted keys, errors
            return lambda v: self.build(tp, v) if isinstance(v, Mapping) else v
        if typing.get_origin(tp) in (tuple, list, Sequence):
            return lambda v: self.sequence(tp, v)
        if self.text and is_optional(tp):
            return lambda v: None if str(v).lower() in ("none", "null", "") else v
        if tp in (bool, int, float):
            return lambda v: self.scalar(tp, v)
        if isinstance(tp, enum.EnumMeta):
            return lambda v: _attempt(v, tp, tp.__getitem__)  # by value, else by name
        if tp is np.dtype or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
            return lambda v: v if v is None else _attempt(v, tp)
        return None

    def build(self, cls: type, data: Mapping[str, Any], base: Any = None) -> Any:
        """``cls`` from ``data`` (over the field values of ``base``, if given). Keys become
        field names: dotted keys nest (``{"model.dim": 8}`` -> ``{"model": {"dim": 8}}``),
        tyro's hyphens read as underscores, unknown keys are refused (or dropped)."""
        fields, out = _init_fields(cls), {}
        for key, value in data.items():
            given, _, tail = str(key).partition(".")
            head = given if given in fields else given.replace("-", "_")
            if head not in fields:
                if self.strict:
                    raise _FieldError("unknown field", given, cls)
                continue
            value = {tail: value} if tail else value
            if isinstance(out.get(head), Mapping) and isinstance(value, Mapping):
                value = {**out[head], **value}  # its own level nests the rest
            elif head in out:
                raise _FieldError("given more than once", head)
            out[head] = value
        if base is not None:  # overridden sections over their own values, the rest as is
            for key, value in out.items():
                now = getattr(base, key)
                try:
                    if dataclasses.is_dataclass(now) and isinstance(value, Mapping):
                        out[key] = self.build(type(now), value, now)
                except dacite.DaciteFieldError as e:
                    e.update_path(key)
                    raise
            out = {name: getattr(base, name) for name in fields} | out
        try:
            return dacite.from_dict(cls, out, self.config)
        except (ValueError, TypeError) as e:  # __post_init__ checks; dacite's are neither
            raise _FieldError(str(e)) from e

    def sequence(self, tp: Any, v: Any) -> Any:
        """YAML/JSON lists as tuples (and back for ``list`` fields); tuple lengths checked."""
        if self.text and isinstance(v, str):
            v = [s.strip() for s in v.split(",")] if v.strip() else []
        if not isinstance(v, list | tuple):  # dacite would iterate a string or a mapping
            raise dacite.WrongTypeError(field_type=tp, value=v)
        args = typing.get_args(tp)
        if typing.get_origin(tp) is tuple and args and args[-1] is not ... and len(args) != len(v):
            raise _FieldError(f"expected {len(args)} values, got {len(v)}")
        return list(v) if typing.get_origin(tp) is list else tuple(v)

    def scalar(self, tp: type, v: Any) -> Any:
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, bool) and tp is not bool:  # an int to isinstance, not to a config
            raise dacite.WrongTypeError(field_type=tp, value=v)
        if isinstance(v, str) and tp is bool and self.text:
            return {"1": True, "true": True, "yes": True, "on": True, "0": False,
                    "false": False, "no": False, "off": False}.get(v.lower(), v)
        parse = isinstance(v, str) and (self.text or tp is float)  # YAML 1.1 reads "1e-3" as str
        if parse or (tp is float and isinstance(v, int)):
            return _attempt(v, tp)
        return v


def _attempt(v: Any, *converters: Callable[[Any], Any]) -> Any:
    """The first conversion of ``v`` that works, else ``v`` (for dacite to reject)."""
    for convert in converters:
        try:
            return convert(v)
        except (TypeError, ValueError, KeyError):
            pass
    return v


def _jsonable(x: Any) -> Any:
    """``json.dumps``'s fallback for what JSON has no type for."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {name: getattr(x, name) for name in _init_fields(type(x))}
    if isinstance(x, enum.Enum):
        return x.value if isinstance(x.value, str) else x.name
    if isinstance(x, np.generic | os.PathLike):
        return x.item() if isinstance(x, np.generic) else os.fspath(x)
    if isinstance(x, np.dtype) or (isinstance(x, type) and issubclass(x, np.generic)) or (
            callable(x) and isinstance(getattr(x, "dtype", None), np.dtype)):
        return np.dtype(x).name  # np/jnp dtypes and scalar types (np.float16, jnp.bfloat16)
    raise TypeError(f"config value {x!r} ({type(x).__name__}) is not JSON-safe")


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}
