"""``parse_config``: a config from ``--preset``, ``--config FILE`` and tyro's dotted flags."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

import tyro

from common.config.convert import ConfigError, apply_overrides
from common.config.files import read_config_file

Config = TypeVar("Config")


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
    prog = _prog()

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


def _prog() -> str:
    """``python -m tokenizer.alpha.train`` for a module run with ``-m`` (its file name,
    ``train.py``, would not say which of several trains), else the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return "python -m " + spec.name.removesuffix(".__main__")
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "trc"


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
