"""Config files (YAML/JSON in, sorted JSON out) and the printable form and hash of a config."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

from common.config.convert import ConfigError, config_from_dict, config_to_dict

Config = TypeVar("Config")


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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, (f"{prefix}.{k}" if prefix else k)))
        else:
            out[(f"{prefix}.{k}" if prefix else k)] = v
    return out
