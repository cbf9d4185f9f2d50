"""A run's metric history as a plain file, and its curves as a PNG.

Every row the ``RunLogger`` logs is appended to ``run_dir/metrics.jsonl`` at full
precision (one JSON object per line: ``step``, ``time`` = seconds of training wall time
since the run first started, summed over resumptions, and the metrics), so a run's
curve is there without W&B. ``plot_curves`` draws it: one panel per metric, the
training values as a line and the eval values (``eval/<name>``) as dots on the same
panel, against steps or wall time. ``python -m common.train.plot_curves RUN`` redraws it.

matplotlib is imported on first use (seconds), through its object API (no pyplot, so no
GUI backend is involved).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
SKIP_PREFIXES = ("perf/",)


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``metrics.jsonl`` (a run directory or the file); a truncated last
    line (a killed run) is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rows: list[dict[str, float]] = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def truncate_after(path: str | os.PathLike, step: int) -> list[dict[str, float]]:
    """Keep the rows up to ``step`` (a resumed run redoes the steps after its
    checkpoint, so their rows are logged again); returns the kept rows."""
    try:
        rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    except FileNotFoundError:
        return []
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def _series(rows: Iterable[dict], key: str, x: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v) and x in r:
            xs.append(float(r[x]))
            ys.append(float(v))
    return xs, ys


def _eval_key(train_names: Sequence[str], name: str) -> str:
    """The training metric an ``eval/<name>`` joins: the same name, else the one training
    name ending in ``/<name>`` (a GAN's eval reports ``mel`` for the training ``gen/mel``)."""
    if name in train_names:
        return name
    matches = [t for t in train_names if t.endswith("/" + name)]
    return matches[0] if len(matches) == 1 else name


def _varies(rows: Sequence[dict], key: str) -> bool:
    values = {r[key] for r in rows if isinstance(r.get(key), (int, float))
              and math.isfinite(r[key])}
    return len(values) > 1


def curve_panels(rows: Sequence[dict], keys: Sequence[str] | None = None
                 ) -> dict[str, list[str]]:
    """``{panel name: [metric keys drawn on it]}``: each training metric with its eval
    counterpart (``eval/<name>``, matched as ``_eval_key`` says). Without ``keys``, every
    logged metric but the bookkeeping ones and those that never change."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k not in ("step", "time") and not k.startswith(SKIP_PREFIXES):
                names.setdefault(k, None)
    train = [k for k in names if not k.startswith("eval/")]
    panels: dict[str, list[str]] = {}
    for k in train:
        panels.setdefault(k, []).append(k)
    for k in names:
        if k.startswith("eval/"):
            panels.setdefault(_eval_key(train, k.removeprefix("eval/")), []).append(k)
    if keys is not None:
        return {k: panels.get(k, [k]) for k in keys}
    return {p: ks for p, ks in panels.items() if any(_varies(rows, k) for k in ks)}


def plot_curves(rows: Sequence[dict], out: str | os.PathLike, *,
                keys: Sequence[str] | None = None, x: str = "step", title: str = "",
                columns: int = 4) -> Path:
    """Draw ``rows`` (``read_metrics``) to the PNG ``out``; ``x`` is "step" or "time"
    (minutes on the axis). Returns the path."""
    from matplotlib.figure import Figure

    panels = curve_panels(rows, keys)
    names = list(panels)
    if not names:
        raise ValueError("no metrics to plot")
    columns = min(columns, len(names))
    nrows = math.ceil(len(names) / columns)
    fig = Figure(figsize=(3.4 * columns, 2.5 * nrows), dpi=100, layout="constrained")
    scale = 1 / 60 if x == "time" else 1.0
    for i, name in enumerate(names):
        axis = fig.add_subplot(nrows, columns, i + 1)
        for key in panels[name]:
            style = (dict(marker="o", ms=3, lw=1, label="eval") if key.startswith("eval/")
                     else dict(lw=1.2, label="train"))
            xs, ys = _series(rows, key, x)
            if xs:
                axis.plot([v * scale for v in xs], ys, **style)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if i >= len(names) - columns:
            axis.set_xlabel("wall time (min)" if x == "time" else "step", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_run(run_dir: str | os.PathLike, *, keys: Sequence[str] | None = None,
             x: str = "step") -> Path | None:
    """``run_dir/metrics.jsonl`` -> ``run_dir/curves.png`` (None when nothing logged)."""
    run_dir = Path(run_dir)
    try:
        rows = read_metrics(run_dir)
    except FileNotFoundError:
        return None
    if not rows:
        return None
    return plot_curves(rows, run_dir / CURVES_FILE, keys=keys, x=x, title=run_dir.name)


def summarize(history: Sequence[dict[str, float]], keys: Sequence[str]) -> str:
    """``key first -> last`` for the given metrics of a run's history."""
    parts = []
    for k in keys:
        vals = [h[k] for h in history if k in h]
        if vals:
            parts.append(f"{k} {vals[0]:.3f} -> {vals[-1]:.3f}")
    return ", ".join(parts)
