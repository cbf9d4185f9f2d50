"""What a resumed run changes about its learning-rate schedules.

A run resumed with other settings than it was saved with continues from the saved
optimizer state under the new schedule: with ``--steps`` raised, a cosine or linear
schedule whose ``total_steps`` follows ``train.steps`` is stretched, so the rate at the
resumed step jumps up and the decay restarts from there. ``common.train.loop`` warns
with what ``schedule_changes`` finds, comparing the config saved in the checkpoint with
the new one. Plain dicts (``config_to_dict``), no jax.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

DECAYING = ("cosine", "linear")  # the schedules that end at total_steps
# Optimizer fields that shape the rate over the steps (total_steps is handled apart).
SCHEDULE_FIELDS = ("schedule", "lr", "warmup_steps", "min_lr_ratio", "eden_lr_batches",
                   "eden_lr_epochs", "eden_steps_per_epoch", "eden_warmup_start")


def _optimizers(d: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping]]:
    """``(dotted path, dict)`` of every optimizer config (a dict with ``schedule`` and
    ``total_steps``) nested in ``d``."""
    for key, value in d.items():
        if isinstance(value, Mapping):
            sub = f"{path}.{key}" if path else str(key)
            if "schedule" in value and "total_steps" in value:
                yield sub, value
            else:
                yield from _optimizers(value, sub)


def _at(d: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def schedule_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per optimizer of ``current`` whose schedule differs from ``saved``'s,
    naming the field and both values (``train.optim: total_steps 1000 -> 2000 (unset:
    follows train.steps)``). Optimizers absent from ``saved`` are skipped; an unset
    ``total_steps`` counts as ``train.steps`` (what ``resolve_optim`` fills in)."""
    saved_steps, steps = _at(saved, "train.steps"), _at(current, "train.steps")
    out = []
    for path, cur in _optimizers(current):
        old = _at(saved, path)
        if not isinstance(old, Mapping):
            continue
        changes = [f"{f} {old.get(f)!r} -> {cur.get(f)!r}" for f in SCHEDULE_FIELDS
                   if f in cur and f in old and old[f] != cur[f]]
        if cur.get("schedule") in DECAYING or old.get("schedule") in DECAYING:
            was = old.get("total_steps") or saved_steps
            now = cur.get("total_steps") or steps
            if was != now:
                unset = " (unset: follows train.steps)" if cur.get("total_steps") is None else ""
                changes.append(f"total_steps {was} -> {now}{unset}")
        if changes:
            out.append(f"{path}: {', '.join(changes)}")
    return out
