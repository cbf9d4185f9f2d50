"""What the world model's trainers' commands share: parse the config, start the runtime,
resolve the data, train the program, and print what the run learned (first -> last of
its training and evaluation metrics). Importing it loads no jax (flags parse first)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from common.config import parse_config
from common.console import setup_console

if TYPE_CHECKING:
    from common.train.loop import TrainResult

ALIASES = {"--resume": "--train.resume", "--steps": "--train.steps",
           "--batch-size": "--data.batch-size", "--run-name": "--train.run-name"}


def train_command(argv: Sequence[str] | None, *, config_cls: type, presets: Mapping[str, Any],
                  doc: str, kind: str, data_module: str, training_module: str,
                  summary_keys: Sequence[str], aliases: Mapping[str, str] | None = None
                  ) -> TrainResult:
    """``python -m worldmodel.train <model>``: ``data_module`` provides ``resolve_data``
    and ``make_data``, ``training_module`` ``build_program`` and, optionally,
    ``make_on_log(cfg, eval_data)`` (the loop's ``on_log`` hook: media to log) (both
    imported after parsing); ``aliases``: the model's short flags besides the shared
    ``ALIASES``."""
    import importlib

    setup_console()
    cfg = parse_config(config_cls, presets, argv, description=doc,
                       aliases={**ALIASES, **(aliases or {})})
    from common.train.curves import summarize
    from common.train.loop import enable_compilation_cache, train
    from common.train.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()
    enable_compilation_cache()
    data = importlib.import_module(data_module)
    training = importlib.import_module(training_module)
    cfg = data.resolve_data(cfg)
    train_data, eval_data = data.make_data(cfg)
    make_on_log = getattr(training, "make_on_log", None)
    try:
        result = train(cfg.train, kind=kind, program=training.build_program(cfg),
                       train_data=train_data, eval_data=eval_data, config=cfg,
                       samples_per_step=cfg.data.batch_size,
                       on_log=make_on_log(cfg, eval_data) if make_on_log else None)
    finally:
        train_data.close()
    what = "stopped (checkpoint saved)" if result.stopped_by_signal else "done"
    shown = ", ".join(filter(None, (
        summarize(result.history, summary_keys),
        summarize(result.eval_history, [f"eval/{k}" for k in summary_keys]))))
    print(f"{what} at step {result.step}: {shown}\nrun directory: {result.run_dir}",
          flush=True)
    return result


def eval_command(argv: Sequence[str] | None, *, options_cls: type, doc: str, kind: str,
                 model: str, title: str, evaluate: Callable[[Any, Any], dict],
                 format_table: Callable[[dict], str]) -> dict:
    """``python -m worldmodel.eval <model>``: parse ``options_cls`` (its ``run``, ``split``
    and ``json``), pick the run (``--run``, else the newest of ``kind``), print
    ``evaluate(run, opts)`` as ``format_table`` gives it and write it as JSON if asked."""
    import json

    import tyro

    from common.train.runs import pick_run

    setup_console()
    opts = tyro.cli(options_cls, args=argv, description=doc.split("\n\n")[0])
    run = pick_run(opts.run, kind, f"worldmodel.eval {model}",
                   train_command=f"python -m worldmodel.train {model}")
    result = evaluate(run, opts)
    print(f"{title}, {run} on split {opts.split!r}:\n{format_table(result)}")
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2))
    return result


def markdown_rows(rows: Sequence[tuple[str, str]]) -> str:
    """``(name, value)`` rows as a two-column markdown table body, names padded."""
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(w)} | {v} |" for k, v in rows)
