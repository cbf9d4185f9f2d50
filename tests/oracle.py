"""The PyTorch oracle environment, as tests use it.

Reference implementations (torch, snac, ...) stay out of uv.lock: they run as scripts
under ``tests/oracles/`` in a separate interpreter, ``.venv-oracle/`` at the repo root
(``bash scripts/setup_oracle_env.sh`` builds it; ``TRC_ORACLE_PYTHON`` points elsewhere),
and hand their results back through files (``.npy``/``.npz``, checkpoints). Tests that
need it are marked ``oracle`` (and ``slow``: a torch interpreter starts per fixture) and
skip, naming the missing interpreter, without it::

    @pytest.mark.oracle
    @pytest.mark.slow
    def test_matches_torch(tmp_path):
        run_oracle("my_case.py", str(tmp_path))
        expected = np.load(tmp_path / "out.npy")
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORACLES = REPO / "tests" / "oracles"
SETUP = "bash scripts/setup_oracle_env.sh"


def oracle_python() -> Path | None:
    """``$TRC_ORACLE_PYTHON`` if set, else ``.venv-oracle/bin/python`` if it exists."""
    if os.environ.get("TRC_ORACLE_PYTHON"):
        return Path(os.environ["TRC_ORACLE_PYTHON"])
    default = REPO / ".venv-oracle" / "bin" / "python"
    return default if default.exists() else None


def require_oracle() -> Path:
    """The oracle interpreter, or ``pytest.skip`` saying what is missing and how to make it."""
    python = oracle_python()
    if python is None:
        pytest.skip(f"no PyTorch oracle env at {REPO / '.venv-oracle'}; create it with "
                    f"`{SETUP}` (or set TRC_ORACLE_PYTHON)")
    if not python.exists():
        pytest.skip(f"TRC_ORACLE_PYTHON={python} does not exist; create the env with `{SETUP}`")
    return python


def run_oracle(script: str | Path, *args: str, timeout: float = 600
               ) -> subprocess.CompletedProcess:
    """Run ``tests/oracles/<script>`` (a name there, or a path) with the oracle python.

    One thread and no GPU: xdist runs several tests at once, and references are CPU
    numbers. Skips as ``require_oracle`` does; a non-zero exit is an AssertionError
    carrying the end of the script's stderr. Returns the completed process (text output).
    """
    python = require_oracle()
    path = Path(script)
    if not path.is_absolute() and not path.exists():
        path = ORACLES / path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(python), str(path), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"oracle {path.name} {' '.join(args)} exited with "
                             f"{proc.returncode}; stderr ends:\n{proc.stderr[-3000:]}")
    return proc
