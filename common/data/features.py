"""The registry of per-utterance feature extractors: what one is, how one is named and built.

An extractor turns a decoded record (``common.data.bad_input.decode_record``'s output:
the record fields plus ``audio`` float32 ``[N]`` at ``sample_rate``) into a dict of
arrays and strings that ``common.data.preprocessing`` stores in ArrayRecord shards. It
declares what it writes in ``spec()``: ``{key: (shape, dtype)}`` with ``None`` for a
variable (time) dimension and dtype a numpy dtype name, or ``"str"``/``"int"``/``"float"``
for Python values. ``info()`` (optional) gives static facts a consumer needs to align
features, e.g. the hop: frames are ``1 + num_samples // hop_length`` for centred frames.

The built-ins (``logmel``, ``f0``, ``text``, ``audio``) live in ``common.data.extractors``.
Plug-ins: ``register_extractor(name, factory)``, or a ``"package.module:factory"`` spec
that is imported when named, so a model package can add, e.g., codec tokens from a
checkpoint (``--extractor-arg codec.checkpoint=/runs/codec``). A factory's keyword
arguments are filled from ``NAME.KEY=VALUE`` strings and converted by its annotations
with the config machinery (``common.config.coerce_values``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.config import ConfigError, coerce_values

Spec = dict[str, tuple[tuple[int | None, ...], str]]
PY_TYPES = {"str": str, "int": int, "float": float}


class ExtractorError(ValueError):
    """A bad extractor name, argument or output; the message names the extractor."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """What ``common.data.preprocessing`` needs from an extractor.

    ``sample_rate``: the rate of the ``audio`` it is given (the runner resamples), or
    None if it does not read audio.
    """

    name: str
    sample_rate: int | None

    def spec(self) -> Spec: ...

    def __call__(self, rec: Mapping[str, Any]) -> dict[str, Any]: ...


# ------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {}
# The built-ins by spec, imported when first named: common.data.extractors imports this
# module for Spec and ExtractorError, so importing it back here would be a cycle.
_BUILTINS = {name: f"common.data.extractors:{attr}"
             for name, attr in (("logmel", "LogMel"), ("f0", "F0"), ("text", "Text"),
                                ("audio", "Audio"))}


def register_extractor(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    """Make ``name`` (used in ``--extractors``) build extractors with ``factory(**args)``."""
    if not name.isidentifier():
        raise ValueError(f"extractor name must be an identifier, got {name!r}")
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    return tuple(sorted({*_BUILTINS, *_REGISTRY}))


def resolve_factory(spec: str) -> Callable[..., FeatureExtractor]:
    """The factory of a registered name or of a ``"package.module:attr"`` spec."""
    if ":" not in spec:
        if spec in _REGISTRY:
            return _REGISTRY[spec]
        if spec not in _BUILTINS:
            raise ExtractorError(f"unknown extractor {spec!r}; registered: {registered()}, or "
                                 "give 'package.module:factory'")
        spec = _BUILTINS[spec]
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ExtractorError(f"extractor {spec!r}: cannot import {module!r} ({e})") from e
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise ExtractorError(f"extractor {spec!r}: {module} has no callable {attr!r}")
    return factory


def short_name(spec: str) -> str:
    """The scope of a spec's arguments: the registered name, or the attr of module:attr."""
    return spec.rpartition(":")[2]


@dataclasses.dataclass(frozen=True)
class ExtractorSetup:
    """A built extractor with the spec and arguments it was built from."""

    spec: str
    args: Mapping[str, Any]
    extractor: FeatureExtractor

    def describe(self) -> dict[str, Any]:
        """JSON form stored in the plan and index (also compared on resume)."""
        ext = self.extractor
        info = ext.info() if callable(getattr(ext, "info", None)) else {}
        return {"name": ext.name, "spec": self.spec,
                "args": {k: _jsonable(v) for k, v in sorted(self.args.items())},
                "sample_rate": ext.sample_rate, "features": spec_to_json(ext.spec()),
                "info": {k: _jsonable(v) for k, v in info.items()}}


def build_extractors(specs: Sequence[str], arg_items: Sequence[str] = (), *,
                     defaults: Mapping[str, Any] | None = None) -> list[ExtractorSetup]:
    """Build each spec with its ``NAME.KEY=VALUE`` arguments (bare ``KEY=VALUE`` if only
    one extractor is named). Keys two extractors would both write are an error.

    ``defaults`` (e.g. ``{"sample_rate": 24000}``) go to every factory that takes such
    an argument and was not given it, so extractors follow the run's settings.
    """
    if len(set(specs)) != len(specs):
        raise ExtractorError(f"an extractor is named twice in {list(specs)}")
    scopes = {}
    for spec in specs:
        scopes.setdefault(spec, spec)
        scopes.setdefault(short_name(spec), spec)
    args: dict[str, dict[str, str]] = {spec: {} for spec in specs}
    for item in arg_items:
        key, eq, value = item.partition("=")
        if not eq:
            raise ExtractorError(f"--extractor-arg {item!r}: expected NAME.KEY=VALUE")
        scope, dot, key = key.rpartition(".")
        if not dot:
            if len(specs) != 1:
                raise ExtractorError(f"--extractor-arg {item!r}: say which extractor, as "
                                     f"NAME.{key}=... with NAME one of {list(specs)}")
            scope = specs[0]
        if scope not in scopes:
            raise ExtractorError(f"--extractor-arg {item!r}: {scope!r} is not one of the "
                                 f"extractors {list(specs)}")
        args[scopes[scope]][key] = value
    setups, owner = [], {}
    for spec in specs:
        factory = resolve_factory(spec)
        kwargs = coerce_args(factory, args[spec], spec)
        params = inspect.signature(factory).parameters
        for key, value in (defaults or {}).items():
            if key in params and key not in kwargs:
                kwargs[key] = value
        try:
            ext = factory(**kwargs)
        except (TypeError, ValueError, OSError) as e:
            raise ExtractorError(f"extractor {spec!r}: {e}") from e
        if not isinstance(ext, FeatureExtractor):
            raise ExtractorError(f"extractor {spec!r}: factory returned {type(ext).__name__}, "
                                 "which lacks name / sample_rate / spec() / __call__")
        for key in ext.spec():
            if key in owner:
                raise ExtractorError(f"feature key {key!r} is written by both {owner[key]!r} "
                                     f"and {spec!r}")
            owner[key] = spec
        setups.append(ExtractorSetup(spec, kwargs, ext))
    return setups



def coerce_args(factory: Callable, args: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """``args`` (strings from the command line) converted by ``factory``'s annotations."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(factory).parameters
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        hints = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in args:
        if key not in params and not takes_any:
            allowed = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL]
            raise ExtractorError(f"extractor {spec!r} has no argument {key!r}; it takes {allowed}")
    try:
        return coerce_values({k: hints[k] for k in args if k in hints}, args, from_text=True)
    except ConfigError as e:
        key = (e.field or "").partition(".")[0]
        raise ExtractorError(f"extractor {spec!r}, argument {key}={args.get(key)!r}: "
                             f"{e.reason}") from e


def spec_to_json(spec: Spec) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(shape), "dtype": str(dtype)} for k, (shape, dtype) in spec.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_output(name: str, spec: Spec, out: Mapping[str, Any], rec_id: str) -> None:
    """Raise ``ExtractorError`` if ``out`` does not match ``spec`` (keys, dtypes, dims)."""
    if set(out) != set(spec):
        raise ExtractorError(f"extractor {name!r} on {rec_id}: wrote keys {sorted(out)}, its "
                             f"spec says {sorted(spec)}")
    for key, (shape, dtype) in spec.items():
        value = out[key]
        if dtype in PY_TYPES:
            if not isinstance(value, PY_TYPES[dtype]):
                raise ExtractorError(f"extractor {name!r} on {rec_id}: {key} is "
                                     f"{type(value).__name__}, spec says {dtype}")
            continue
        if not shape and isinstance(value, np.generic):  # a numpy scalar for shape ()
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype) or \
                value.ndim != len(shape) or \
                any(s is not None and s != v for s, v in zip(shape, value.shape, strict=True)):
            got = (f"{value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise ExtractorError(f"extractor {name!r} on {rec_id}: {key} is {got}, spec says "
                                 f"{dtype}{list(shape)}")
