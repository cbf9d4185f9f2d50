"""The dependency direction of docs/ARCHITECTURE.md, held by the import-linter contracts
in pyproject.toml (``[tool.importlinter]``): common <- tokenizer <- worldmodel, tts; inside
common, nn/audio/losses/config <- speech <- data <- train <- bench; the codecs on
tokenizer.codec and independent of each other. A violation fails here with the offending
import named."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")
