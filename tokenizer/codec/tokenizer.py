"""Loading a codec from a run directory."""

from __future__ import annotations

from pathlib import Path

from common.train.loop import TrainConfig, resolve_run_dir


def find_run(run: str | Path | None, runs_root: str | Path = "runs") -> Path:
    """``run`` itself, or the newest run with checkpoints under ``runs_root``."""
    if run:
        path = Path(run)
        if not (path / "checkpoints").is_dir():
            raise FileNotFoundError(f"{path}: not a run directory (no checkpoints/ inside); "
                                    "pass the directory train printed at the end")
        return path
    return resolve_run_dir(TrainConfig(run_dir=str(runs_root), resume=True))
