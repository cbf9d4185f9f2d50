"""Typed run configs: named presets, overrides from a YAML/JSON file and the command line.

A config is a frozen (possibly nested) dataclass. ``parse_config`` picks a preset
(``--preset NAME``), applies a file of overrides on top (``--config PATH``), then
hands the result to tyro as the default, so every field can be overridden with its
dotted name (``--model.dim 64 --optim.lr 1e-3``) and ``--help`` shows the values the
run will actually use. The dict helpers give the JSON form saved next to checkpoints.

Invalid input fails at once with the dotted field name: tyro exits with code 2 on the
command line, the file and dict loaders raise ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import hashlib
import json
import os
import pathlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import tyro
import yaml

Config = TypeVar("Config")

__all__ = [
    "ConfigError",
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "format_config",
    "load_config",
    "parse_config",
    "read_config_file",
    "replace_path",
    "save_config",
]


class ConfigError(ValueError):
    """An invalid config value, an unknown field, or an unreadable config file."""


# ----------------------------------------------------------------------------- CLI


def parse_config(
    config_cls: type[Config],
    presets: Mapping[str, Config],
    argv: Sequence[str] | None = None,
    *,
    default_preset: str = "tiny",
    description: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Config:
    """Build a ``config_cls`` from ``--preset``, ``--config FILE`` and field overrides.

    Precedence, lowest first: the preset, the file, the command line. ``argv``
    defaults to ``sys.argv[1:]``. ``aliases`` maps short flags to dotted ones
    (``{"--steps": "--train.steps"}``; ``--steps=5`` works too), listed in ``--help``.
    Errors print a message naming the field and exit with code 2, as tyro does.
    """
    if not presets:
        raise ValueError("parse_config needs at least one preset")
    if default_preset not in presets:
        raise ValueError(f"default_preset {default_preset!r} is not one of {list(presets)}")
    clash = {"preset", "config"} & {f.name for f in dataclasses.fields(config_cls)}
    if clash:
        raise ValueError(f"{config_cls.__name__} fields {sorted(clash)} clash with CLI options")
    argv = list(sys.argv[1:] if argv is None else argv)
    aliases = dict(aliases or {})
    argv = [_expand_alias(arg, aliases) for arg in argv]
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "trc"

    # First pass: only --preset / --config; everything else (including --help) is
    # left for the second pass, whose defaults depend on what this one picks.
    names = tuple(presets)
    sel, rest = tyro.cli(
        _selector(names, default_preset),
        args=argv,
        prog=prog,
        return_unknown_args=True,
        add_help=False,
    )
    cfg = presets[sel.preset]
    if sel.config is not None:
        try:
            cfg = apply_overrides(cfg, read_config_file(sel.config))
        except ConfigError as e:
            print(f"{prog}: error: --config {sel.config}: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    doc = (config_cls.__doc__ or "").strip()
    if doc.startswith(config_cls.__name__ + "("):  # dataclasses' stand-in: the signature
        doc = ""
    head = description or doc or config_cls.__name__
    source = f"preset '{sel.preset}'" + (f" + {sel.config}" if sel.config else "")
    desc = (
        f"{head}\n--preset {{{','.join(names)}}} picks the base config (default "
        f"'{default_preset}'); --config PATH applies a YAML/JSON file of overrides on top. "
        f"Defaults below are from {source}."
    )
    if aliases:
        desc += " Short flags: " + ", ".join(f"{k} = {v}" for k, v in aliases.items()) + "."
    # AvoidSubcommands: an ``X | None`` section whose default is set gets plain dotted
    # flags (``--ema.decay``) instead of tyro's ``ema:x`` subcommands; switching such a
    # section on or off is done by the preset or the file.
    return tyro.cli(config_cls, default=cfg, args=rest, prog=prog, description=desc,
                    config=(tyro.conf.AvoidSubcommands,))


def _expand_alias(arg: str, aliases: Mapping[str, str]) -> str:
    """``--steps`` -> ``--train.steps`` (and ``--steps=5`` -> ``--train.steps=5``)."""
    flag, eq, value = arg.partition("=")
    return aliases[flag] + eq + value if flag in aliases else arg


@functools.cache
def _selector(names: tuple[str, ...], default: str) -> type:
    """The first-pass dataclass: ``--preset`` (a Literal of the names) and ``--config``."""
    return dataclasses.make_dataclass(
        "Selector",
        [
            ("preset", Literal[names], dataclasses.field(default=default)),
            ("config", pathlib.Path | None, dataclasses.field(default=None)),
        ],
        frozen=True,
    )


# ------------------------------------------------------------------ dict conversion


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
    return _build(config_cls, _nest(d, ""), "", strict)


def apply_overrides(cfg: Config, overrides: Mapping[str, Any], *, strict: bool = True) -> Config:
    """``cfg`` with the values of a (nested or dotted-key) mapping replaced."""
    return _override(cfg, _nest(overrides, ""), "", strict)


def replace_path(cfg: Config, path: str, value: Any) -> Config:
    """``replace_path(cfg, "model.dim", 64)``: dotted ``dataclasses.replace``."""
    return apply_overrides(cfg, {path: value})


# ---------------------------------------------------------------------------- files


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON file."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return dict(data)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write ``cfg`` as pretty JSON with sorted keys (atomically)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_config(config_cls: type[Config], path: str | os.PathLike, *, strict: bool = True
                ) -> Config:
    """Read a config saved by ``save_config`` (or any JSON/YAML mapping of its fields)."""
    data = read_config_file(path)
    try:
        return config_from_dict(config_cls, data, strict=strict)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


# ---------------------------------------------------------------------- display


def format_config(cfg: Any) -> str:
    """One ``dotted.name  value`` line per leaf field, under the class name and hash."""
    flat = _flatten(config_to_dict(cfg))
    width = max((len(k) for k in flat), default=0)
    lines = [f"{type(cfg).__name__} (hash {config_hash(cfg)})"]
    lines += [f"  {k.ljust(width)}  {json.dumps(v)}" for k, v in flat.items()]
    return "\n".join(lines)


def config_hash(cfg: Any, length: int = 10) -> str:
    """Short hex digest of the canonical JSON: equal configs hash equal across runs."""
    blob = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# ------------------------------------------------------------------------ internals


def _is_dataclass_instance(x: Any) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


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


def _nest(d: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Expand dotted keys (``{"model.dim": 8}`` -> ``{"model": {"dim": 8}}``)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(d).__name__}")
    out: dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise ConfigError(f"{_join(path, str(key))}: keys must be strings")
        head, _, tail = key.partition(".")
        if tail:
            value = {tail: value}
        if head in out and isinstance(out[head], dict) and isinstance(value, Mapping):
            out[head] = {**out[head], **_nest(value, _join(path, head))}
        elif head in out:
            raise ConfigError(f"{_join(path, head)}: given more than once")
        else:
            out[head] = value
    return out


def _field_name(cls: type, key: str, path: str) -> str:
    fields = _init_fields(cls)
    if key in fields:
        return key
    if key.replace("-", "_") in fields:  # tyro spells fields with hyphens
        return key.replace("-", "_")
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean '{_join(path, close[0])}'?)" if close else ""
    raise ConfigError(
        f"unknown field '{_join(path, key)}'{hint}; {cls.__name__} has: {', '.join(fields)}"
    )


def _construct(cls: type, kwargs: dict[str, Any], path: str, base: Any = None) -> Any:
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation, missing fields
        where = path or cls.__name__
        raise ConfigError(f"{where}: {e}") from e


def _build(cls: type, d: Mapping[str, Any], path: str, strict: bool) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in d.items():
        try:
            name = _field_name(cls, key, path)
        except ConfigError:
            if strict:
                raise
            continue
        kwargs[name] = _coerce(value, hints[name], _join(path, name), strict)
    missing = [
        n for n, f in _init_fields(cls).items()
        if n not in kwargs
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required field(s): {[_join(path, n) for n in missing]}")
    return _construct(cls, kwargs, path)


def _override(cfg: Any, d: Mapping[str, Any], path: str, strict: bool) -> Any:
    cls = type(cfg)
    hints = _hints(cls)
    changes = {}
    for key, value in d.items():
        try:
            name = _field_name(cls, key, path)
        except ConfigError:
            if strict:
                raise
            continue
        current = getattr(cfg, name)
        sub = _join(path, name)
        if _is_dataclass_instance(current) and isinstance(value, Mapping):
            changes[name] = _override(current, _nest(value, sub), sub, strict)
        else:
            changes[name] = _coerce(value, hints[name], sub, strict)
    return _construct(cls, changes, path, base=cfg) if changes else cfg


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(value: Any, tp: Any, path: str) -> ConfigError:
    return ConfigError(f"{path}: invalid value {value!r}, expected {_describe(tp)}")


def _coerce(value: Any, tp: Any, path: str, strict: bool) -> Any:
    """``value`` checked against annotation ``tp`` (lists become tuples where asked)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin is Literal:
        for a in args:
            if value == a and type(value) is type(a):
                return a
        if isinstance(value, str):  # enum members in a Literal are saved by name/value
            for a in args:
                if isinstance(a, enum.Enum) and value in (a.name, a.value):
                    return a
        raise ConfigError(
            f"{path}: invalid value {value!r}, allowed values: "
            + ", ".join(repr(a) for a in args)
        )
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, path, strict)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise _bad(value, tp, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(value, tp, path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]", strict) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        if not args:
            return tuple(value)
        return tuple(
            _coerce(v, a, f"{path}[{i}]", strict)
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (list, Sequence):
        if not isinstance(value, list | tuple):
            raise _bad(value, tp, path)
        item = args[0] if args else Any
        seq = [_coerce(v, item, f"{path}[{i}]", strict) for i, v in enumerate(value)]
        return seq if origin is list else tuple(seq)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _bad(value, tp, path)
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, _join(path, str(k)), strict) for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, _nest(value, path), path, strict)
        raise _bad(value, tp, path)
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise _bad(value, tp, path)
    if tp is int:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return int(value)
        raise _bad(value, tp, path)
    if tp is float:
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        ):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _bad(value, tp, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(value, tp, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value in (member.name, member.value):
                return member
        raise ConfigError(
            f"{path}: invalid value {value!r}, allowed values: "
            + ", ".join(repr(m.name) for m in tp)
        )
    if isinstance(tp, type) and issubclass(tp, os.PathLike | pathlib.PurePath):
        if isinstance(value, str | os.PathLike):
            return tp(value)
        raise _bad(value, tp, path)
    if tp is np.dtype or (isinstance(tp, type) and issubclass(tp, np.dtype)):
        try:
            return np.dtype(value)
        except TypeError as e:
            raise _bad(value, tp, path) from e
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _bad(value, tp, path)
    return value  # TypeVars, callables and other forms we do not check


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, _join(prefix, k)))
        else:
            out[_join(prefix, k)] = v
    return out
