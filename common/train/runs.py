"""What a run directory holds, and finding runs: ``run_dir/run.json``; ``python -m
common.train.list_runs [ROOT]`` prints them.

A run directory (``runs/<name>/``: ``checkpoints/``, ``config.json``) says which model it
holds in ``run.json``::

    {"kind": "tokenizer.snac", "weights": "converted", "source": "snac_24khz/",
     "created": "2026-12-06T23:40:00+00:00", "config_class": "tokenizer.snac...SnacConfig"}

``kind`` names the package whose ``train`` module makes such runs (``python -m
<kind>.train``), so a command that loads a run can say which one it needs and how to
get one. ``weights`` is where the weights came from: "trained" by this run (from
scratch, or starting from ``source``, e.g. ``--init-from``), "converted" from a
published checkpoint (``source``), or "random". Runs written before ``run.json``
existed get their kind guessed from ``config.json``'s top-level keys, else "unknown".

A command that loads a run calls ``pick_run(run, kind, command)``: the given run, checked
to be of ``kind`` (``require_kind``), or the newest of ``kind`` (``latest_run``); both fail
with a message that says what to do.

This module reads and writes plain files only (no jax, no orbax), so listing runs and
checking a run's kind cost nothing before a command parses its flags.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
WEIGHTS = ("trained", "converted", "random")
UNKNOWN = "unknown"
LIST_COMMAND = "python -m common.train.list_runs"

# Runs from before run.json: a config's top-level keys that only that kind's config has.
# Strings only: common imports nothing from the model packages.
_LEGACY_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("tokenizer.alpha", frozenset({"codec", "quantizer", "disc"})),
    ("tokenizer.snac", frozenset({"model", "init_from", "curriculum"})),
)


class RunKindError(ValueError):
    """A run directory holds another kind of model than the command needs."""


class NoRunError(FileNotFoundError):
    """No run of the wanted kind exists where a command looked."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """The contents of ``run.json`` (see the module doc)."""

    kind: str
    weights: str = "trained"
    source: str | None = None
    created: str = ""
    config_class: str | None = None

    def describe_weights(self) -> str:
        """E.g. "trained", "trained from runs/base", "converted from snac_24khz/"."""
        return f"{self.weights} from {self.source}" if self.source else self.weights


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _class_name(config: Any) -> str | None:
    if config is None or isinstance(config, str):
        return config
    cls = config if isinstance(config, type) else type(config)
    if cls is dict:  # a plain dict names no config class
        return None
    return f"{cls.__module__}.{cls.__qualname__}"


def write_run_info(run_dir: str | os.PathLike, kind: str, *, weights: str = "trained",
                   source: str | os.PathLike | None = None, config: Any = None,
                   created: str | None = None) -> Path:
    """Write ``run_dir/run.json`` (replacing one that exists). ``config``: the run's config
    (or its class, or a class name), recorded by class name. Call on process 0 only."""
    if not kind:
        raise ValueError("a run's kind must be named, e.g. 'tokenizer.alpha'")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    info = RunInfo(kind=kind, weights=weights, source=None if source is None else str(source),
                   created=created or _utc_now(), config_class=_class_name(config))
    path = Path(run_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")  # a reader never sees half a file
    tmp.write_text(json.dumps(dataclasses.asdict(info), indent=2) + "\n")
    tmp.replace(path)
    return path


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _legacy_kind(config: dict | None) -> str:
    keys = set(config or ())
    for kind, marks in _LEGACY_KINDS:
        if marks <= keys:
            return kind
    return UNKNOWN


def read_run_info(run_dir: str | os.PathLike) -> RunInfo:
    """``run_dir``'s ``run.json``; for older runs, the kind guessed from ``config.json``
    (weights "trained", created: the directory's time), or kind "unknown"."""
    run_dir = Path(run_dir)
    data = _read_json(run_dir / RUN_FILE)
    if data is not None and data.get("kind"):
        fields = {f.name for f in dataclasses.fields(RunInfo)}
        return RunInfo(**{k: v for k, v in data.items() if k in fields})
    created = (datetime.datetime.fromtimestamp(run_dir.stat().st_mtime, datetime.UTC)
               .isoformat(timespec="seconds") if run_dir.exists() else "")
    kind = _legacy_kind(_read_json(run_dir / "config.json"))
    return RunInfo(kind=kind, weights="trained" if kind != UNKNOWN else UNKNOWN,
                   created=created)


def require_kind(run_dir: str | os.PathLike, kind: str, command: str) -> RunInfo:
    """``run_dir``'s info if it holds a ``kind`` run; else a ``RunKindError`` naming both
    kinds and ``command`` (e.g. "tokenizer.alpha.infer"). A run whose kind cannot be told
    (no run.json, unrecognised config) passes with a warning: loading it will tell."""
    info = read_run_info(run_dir)
    if info.kind == kind:
        return info
    if info.kind == UNKNOWN:
        log.warning("%s has no %s and its config.json does not say which model it holds; "
                    "trying it as a %s run", run_dir, RUN_FILE, kind)
        return info
    raise RunKindError(f"{run_dir} is a {info.kind} run; {command} needs a {kind} run "
                       f"(see `{LIST_COMMAND}`)")


def start_run(run_dir: str | os.PathLike, kind: str, *, source: str | os.PathLike | None = None,
              config: Any = None, write: bool = True) -> RunInfo:
    """The training loop's record: a new run writes ``run.json`` (weights "trained", from
    ``source`` if given); a resumed run must be of ``kind`` and keeps its file (a run from
    before ``run.json`` gets one). ``write``: False on all processes but 0 (they check)."""
    info = read_run_info(run_dir) if Path(run_dir).is_dir() else None
    if info is not None and info.kind not in (kind, UNKNOWN):
        raise RunKindError(f"{run_dir} is a {info.kind} run; training a {kind} model needs a "
                           f"{kind} run (see `{LIST_COMMAND}`)")
    if (Path(run_dir) / RUN_FILE).exists() or not write:
        return info or RunInfo(kind=kind, source=None if source is None else str(source))
    # A run from before run.json keeps its directory's time as its creation time.
    write_run_info(run_dir, kind, source=source, config=config,
                   created=info.created if info else None)
    return read_run_info(run_dir)


# ---------------------------------------------------------------------------------------
# Listing and finding runs (plain files: orbax's layout read without orbax).


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """The finished checkpoint steps of a run (orbax writes ``checkpoints/<step>/``; a
    save in progress has a temporary name)."""
    ckpts = Path(run_dir) / "checkpoints"
    if not ckpts.is_dir():
        return []
    return sorted(int(p.name) for p in ckpts.iterdir() if p.is_dir() and p.name.isdigit())


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One line of ``list_runs``. ``best``: ``(metric, value, step)`` of the best kept
    checkpoint by the run's ``train.checkpoint.best_metric``, or None."""

    name: str
    path: Path
    kind: str
    weights: str
    latest_step: int | None
    best: tuple[str, float, int] | None
    created: str


def best_checkpoint(run_dir: str | os.PathLike) -> tuple[str, float, int] | None:
    """The best scored checkpoint as ``common.train.checkpoint.Checkpointer`` ranks it
    (``checkpoints/<step>/scores/metadata``, metric and mode from ``config.json``)."""
    run_dir = Path(run_dir)
    ckpt_cfg = ((_read_json(run_dir / "config.json") or {}).get("train") or {}).get(
        "checkpoint") or {}
    metric = ckpt_cfg.get("best_metric", "eval/loss")
    sign = 1.0 if ckpt_cfg.get("best_mode", "min") == "max" else -1.0
    scored = []
    for step in checkpoint_steps(run_dir):
        scores = _read_json(run_dir / "checkpoints" / str(step) / "scores" / "metadata")
        if scores and metric in scores:
            scored.append((sign * float(scores[metric]), step, float(scores[metric])))
    if not scored:
        return None
    _, step, value = max(scored)
    return metric, value, step


def _is_run(path: Path) -> bool:
    return path.is_dir() and ((path / RUN_FILE).is_file() or (path / "checkpoints").is_dir())


def list_runs(root: str | os.PathLike = "runs") -> list[RunSummary]:
    """Every run directly under ``root`` (a directory with ``run.json`` or
    ``checkpoints/``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        if not _is_run(path):
            continue
        info = read_run_info(path)
        steps = checkpoint_steps(path)
        out.append(RunSummary(name=path.name, path=path, kind=info.kind,
                              weights=info.describe_weights(),
                              latest_step=steps[-1] if steps else None,
                              best=best_checkpoint(path), created=info.created))
    return sorted(out, key=lambda r: (r.created, r.name))


def latest_run(kind: str, root: str | os.PathLike = "runs", *, train_command: str = "",
               flag: str = "--run") -> Path:
    """The newest run of ``kind`` under ``root`` that has a checkpoint; else a
    ``NoRunError`` that says how to make one (``train_command``, default ``python -m
    <kind>.train``) or to pass ``flag DIR``."""
    runs = list_runs(root)
    mine = [r for r in runs if r.kind == kind and r.latest_step is not None]
    if mine:
        return mine[-1].path
    others = sorted({r.kind for r in runs if r.kind != kind})
    also = (f" (it holds {', '.join(others)} runs: `{LIST_COMMAND} {root}`)"
            if others else "")
    raise NoRunError(f"no {kind} run under {Path(root)}/: train one with "
                     f"`{train_command or f'python -m {kind}.train'}` or pass {flag} "
                     f"DIR{also}")


def pick_run(run: str | os.PathLike | None, kind: str, command: str,
             root: str | os.PathLike = "runs", *, train_command: str = "",
             flag: str = "--run") -> Path:
    """The run a command loads: ``run`` itself, checked to have checkpoints and to be of
    ``kind`` (``require_kind``), or with no ``run`` the newest of ``kind`` under ``root``
    (``latest_run``). ``command`` names the command in errors ("tokenizer.alpha.infer"),
    ``flag`` the option that gives the run and ``train_command`` the command that makes
    one (default ``python -m <kind>.train``)."""
    if not run:
        return latest_run(kind, root, train_command=train_command, flag=flag)
    path = Path(run)
    if not (path / "checkpoints").is_dir():
        raise FileNotFoundError(f"{flag} {path}: not a run directory (no checkpoints/ "
                                "inside); pass the directory train printed at the end")
    require_kind(path, kind, command)
    return path


def format_runs(runs: Sequence[RunSummary]) -> str:
    """The table ``python -m common.train.list_runs`` prints."""
    head = ("NAME", "KIND", "WEIGHTS", "STEP", "BEST", "CREATED")
    rows = [head] + [(
        r.name, r.kind, r.weights, "-" if r.latest_step is None else str(r.latest_step),
        f"{r.best[0]} {r.best[1]:.4g} @ {r.best[2]}" if r.best else "-",
        r.created.replace("T", " ")[:16] or "-") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
