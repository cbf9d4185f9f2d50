"""``python -m common.train.list_runs [ROOT]``: the runs under ROOT (default ``runs``),
one line each. The command line only; run directories are ``common.train.runs``."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import tyro

from common.console import setup_console
from common.train.runs import LIST_COMMAND, RUN_FILE, format_runs, list_runs


@dataclasses.dataclass(frozen=True)
class ListRuns:
    """List the runs under ROOT: kind, where the weights came from, latest checkpoint
    step, best checkpoint, creation time (UTC).

    Attributes:
      root: directory that holds the runs.
      verbose: show library start-up logs (also TRC_VERBOSE=1).
    """

    root: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="ROOT")] = "runs"
    verbose: bool = False


def main(argv: Sequence[str] | None = None) -> int:

    args = tyro.cli(ListRuns, args=argv, prog=LIST_COMMAND,
                    description=" ".join(ListRuns.__doc__.split("\n\n")[0].split()))
    setup_console(args.verbose)
    runs = list_runs(args.root)
    if not runs:
        print(f"no runs under {Path(args.root).absolute()} (a run is a directory with "
              f"{RUN_FILE} or checkpoints/)", file=sys.stderr)
        return 1
    print(format_runs(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
