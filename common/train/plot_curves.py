"""``python -m common.train.plot_curves RUN [--x time] [--keys gen/mel eval/...]``: draw
a run's ``metrics.jsonl`` to a PNG (default ``RUN/curves.png``, what a finished run
leaves). The command line only; the drawing is ``common.train.curves``."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import tyro

from common.console import setup_console
from common.train.curves import CURVES_FILE, METRICS_FILE, plot_curves, read_metrics


@dataclasses.dataclass(frozen=True)
class PlotCurves:
    """Draw a run's metric history (RUN/metrics.jsonl) as a PNG.

    Attributes:
      run: the run directory.
      x: the horizontal axis: steps or wall time (minutes).
      keys: metric names to draw (training names; eval values join them), default all.
      out: the PNG to write (default RUN/curves.png).
      verbose: show library start-up logs (also TRC_VERBOSE=1).
    """

    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    x: Literal["step", "time"] = "step"
    keys: tuple[str, ...] = ()
    out: str = ""
    verbose: bool = False


def main(argv: Sequence[str] | None = None) -> int:
    args = tyro.cli(PlotCurves, args=argv, prog="python -m common.train.plot_curves",
                    description=" ".join(PlotCurves.__doc__.split("\n\n")[0].split()))
    setup_console(args.verbose)
    run = Path(args.run)
    if not (run / METRICS_FILE).is_file():
        print(f"{run} has no {METRICS_FILE} (runs write it as they log)", file=sys.stderr)
        return 1
    out = plot_curves(read_metrics(run), args.out or run / CURVES_FILE,
                      keys=args.keys or None, x=args.x, title=run.name)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
