"""The command line the codecs' commands share: their option dataclasses (tyro), the
``encode|decode|roundtrip`` subcommands, the closing message and the exit status.

Only the standard library and tyro load here, so a command's ``--help`` answers before
jax and the model code are imported; the work itself (reading inputs, encode / decode
over files) is in ``tokenizer.codec.file_commands``, imported by ``main`` after parsing.

Exit status, the same for every command (``exit_with``): 0 when it produced something
(unreadable inputs it skipped are reported, not failures), 1 when it produced nothing
or stopped at an error (printed as ``error: ...``), 2 for usage errors (tyro's, and
``UsageError``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, NoReturn, TypeVar

import tyro

T = TypeVar("T")

# A nested option dataclass whose flags keep their own names (``--run``, not
# ``--run-args.run``).
Flat = tyro.conf.arg(name="")

COMMANDS = {"encode": "audio files -> token files (.npz)",
            "decode": "token files (.npz) -> audio (.wav)",
            "roundtrip": "audio files -> tokens -> audio (.wav)"}


@dataclasses.dataclass(frozen=True)
class RunArgs:
    """Which trained codec to load, and how much the console shows."""

    run: Annotated[str | None, tyro.conf.arg(metavar="DIR")] = None
    """run directory; without it, the newest run of this codec under runs/"""
    step: int | Literal["latest", "best"] = "latest"
    """checkpoint step: a number, 'latest' or 'best'"""
    verbose: bool = False
    """show the libraries' start-up logs (also TRC_VERBOSE=1)"""


@dataclasses.dataclass(frozen=True)
class FileArgs:
    """Inputs and outputs of ``encode|decode|roundtrip``."""

    input: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="INPUT")]
    """an audio file / .npz, or a folder of them (searched recursively)"""
    output: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="OUTPUT")]
    """output folder (mirrors a folder input's layout)"""
    batch_size: int = 8
    """waveforms per model call"""
    loudness: bool = True
    """encode at the training data's loudness (--no-loudness: at the input's level)"""
    strict: bool = False
    """stop at the first bad file instead of skipping it"""
    keep_truncated: bool = False
    """use what is left of a truncated file (logged) instead of skipping it"""
    output_rate: Annotated[int | None, tyro.conf.arg(metavar="HZ")] = None
    """rate of written audio (default: roundtrip at each input's own rate, decode at the codec's)"""


def _named(options: type[T], name: str) -> type[T]:
    """``options`` as the subcommand ``name``: the same flags, ``command`` says which."""
    return dataclasses.make_dataclass(
        name.capitalize(), [], bases=(options,), frozen=True,
        namespace={"command": name, "__doc__": COMMANDS[name],
                   "__module__": options.__module__})


def parse_codec_command(options: type[T], argv: Sequence[str] | None, *, prog: str,
                        description: str) -> T:
    """``encode|decode|roundtrip INPUT OUTPUT [flags]`` parsed into an ``options``
    instance (a dataclass with ``files: FileArgs``); its ``command`` names the
    subcommand."""
    subs = {name: _named(options, name) for name in COMMANDS}
    return tyro.extras.subcommand_cli_from_dict(subs, prog=prog, description=description,
                                                args=argv)


def parse(options: type[T], argv: Sequence[str] | None, *, prog: str,
          description: str) -> T:
    """A command's flags (no subcommands) into an ``options`` instance."""
    return tyro.cli(options, args=argv, prog=prog, description=description)


def print_summary(command: str, output: Path, result: Mapping, codec: str) -> None:
    """``encode: wrote N files to OUT (codec RUN step S); skipped K silent=1 ...: FILE:
    REASON (DETAIL); ...; fixed M resampled=2 ...``: the bad-input reasons and notes
    counted as every command counts them (``common.data.bad_input``)."""
    skipped = result["skipped"]
    counts = result.get("skip_counts") or ({"unreadable": len(skipped)} if skipped else {})
    notes = result.get("notes") or {}

    def tally(d: Mapping[str, int]) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(d.items()))

    print(f"{command}: wrote {len(result['written'])} files to {output} "
          f"({codec} {result['run_dir']} step {result['step']})"
          + (f"; skipped {len(skipped)} {tally(counts)}: " + "; ".join(skipped)
             if skipped else "")
          + (f"; fixed {sum(notes.values())} {tally(notes)}" if notes else ""),
          flush=True)


class UsageError(ValueError):
    """A flag value the command cannot work with (exit status 2, as tyro's own)."""


def _cli_errors() -> tuple[type[BaseException], ...]:
    """What a command reports as ``error: ...`` instead of a traceback: bad inputs and
    runs (``ValueError``s: unreadable audio, foreign token files, a run of another
    kind; missing files and runs) and checkpoint errors. The checkpoint module is only
    asked for when it is loaded: an error raised before it was cannot be one of its."""
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)
    ckpt = sys.modules.get("common.train.checkpoint")
    return errors + ((ckpt.CheckpointError,) if ckpt is not None else ())


def exit_status(produced: Callable[[], int]) -> int:
    """Run a command (``produced`` returns how many outputs it made) and return its exit
    status by the rule in the module doc; errors are printed to stderr."""
    try:
        n = produced()
    except Exception as e:
        if not isinstance(e, _cli_errors()):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, UsageError) else 1
    if n < 1:
        print("error: nothing was produced (every input was skipped or none was found)",
              file=sys.stderr, flush=True)
        return 1
    return 0


def exit_with(produced: Callable[[], int]) -> NoReturn:
    """``sys.exit(exit_status(produced))``: the ``__main__`` block of every command."""
    sys.exit(exit_status(produced))
