"""The generic training loop: it drives a ``Program`` over data and leaves a run directory.

The loop knows nothing of models or losses. A package's ``train.py`` builds a
``common.train.program.Program`` (``supervised_program`` for one model and one loss,
``common.train.gan.gan_program`` for a generator and a discriminator) and hands it over::

    program = supervised_program(lambda rngs: Codec(cfg.model, rngs=rngs), codec_loss,
                                 make_optimizer(resolve_optim(cfg.train)),
                                 seed=cfg.train.seed, grad_accum=cfg.train.grad_accum)
    result = train(cfg.train, kind="tokenizer.alpha", program=program, train_data=batches,
                   eval_data=make_eval_batches, config=cfg)

The loop builds the mesh and the sharded train state (straight onto the devices, no
host copy), resumes the latest checkpoint when asked (model, optimizer, step, RNG and
the data iterator, so the run continues exactly), runs the jitted step, logs on log
steps only (metrics stay on device otherwise), evaluates every ``eval_every`` steps,
checkpoints every ``checkpoint.every`` steps, and on SIGTERM/SIGINT saves and returns
(processes agree on that every ``stop_check_seconds``; a streak of ``max_nonfinite``
skipped updates stops the run with ``NonFiniteError``; neither check syncs the host
every step: ``common.train.stopping``).
``kind`` is what the run directory says it holds (``run.json``, ``common.train.runs``):
an argument of ``train`` rather than of the ``Program`` because one program serves
several models (``gan_program`` trains alpha and SNAC) and the run directory is the
loop's.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from common.config import config_to_dict, format_config
from common.train.checkpoint import Checkpointer, CheckpointError, write_config_json
from common.train.configs import TrainConfig
from common.train.logging import RunLogger
from common.train.mesh import batch_sharding as make_batch_sharding
from common.train.mesh import host_to_global, make_mesh, state_shardings
from common.train.optim import OptimizerConfig
from common.train.program import Program
from common.train.resume_check import schedule_changes
from common.train.runs import UNKNOWN, read_run_info, start_run
from common.train.step import jit_train_step, trace_init
from common.train.stopping import NonFiniteWatch, StopAgreement, StopFlag

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """Too many consecutive steps with a NaN/Inf loss or gradient."""


@dataclasses.dataclass
class TrainResult:
    """What a run leaves behind (host-side values)."""

    run_dir: Path
    step: int
    history: list[dict[str, float]]
    eval_history: list[dict[str, float]]
    stopped_by_signal: bool
    state: Any
    program: Program


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Keep compiled XLA programs on disk (``$TRC_CACHE_DIR/jax``, default
    ``~/.cache/trc/jax``), so a resumed or repeated run skips recompiling its steps.
    ``JAX_COMPILATION_CACHE_DIR``, when set, wins. Entry points call this; tests don't."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    root = Path(path) if path is not None else Path(
        os.environ.get("TRC_CACHE_DIR") or Path.home() / ".cache" / "trc") / "jax"
    jax.config.update("jax_compilation_cache_dir", str(root))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return root


def resolve_run_dir(cfg: TrainConfig, kind: str | None = None) -> Path:
    """The run's directory; with ``resume`` and no name, the newest run with checkpoints
    (of ``kind`` when given: resuming never picks another model's run)."""
    root = Path(cfg.run_dir)
    if cfg.run_name:
        return root / cfg.run_name
    if cfg.resume:
        runs = sorted((p for p in root.glob("*") if (p / "checkpoints").is_dir()
                       and (kind is None or read_run_info(p).kind in (kind, UNKNOWN))),
                      key=lambda p: p.stat().st_mtime)
        if not runs:
            what = f"{kind} run" if kind else "run"
            raise FileNotFoundError(f"--resume: no {what} with checkpoints under {root}")
        return runs[-1]
    return root / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def resolve_optim(cfg: TrainConfig, optim: OptimizerConfig | None = None) -> OptimizerConfig:
    """``optim`` (default ``cfg.optim``) with ``total_steps`` defaulting to the run's steps."""
    optim = optim or cfg.optim
    if optim.total_steps is None:  # decaying schedules run over the whole run by default
        warmup = optim.warmup_steps
        if optim.schedule in ("cosine", "linear") and warmup >= cfg.steps:
            # A short run of a preset (--steps 20 for a check) keeps the warm-up's share
            # of the run rather than failing on a schedule that cannot fit.
            warmup = cfg.steps // 10
            log.warning("optimizer warm-up of %d steps does not fit a %d-step run: warming "
                        "up over %d", optim.warmup_steps, cfg.steps, warmup)
        optim = dataclasses.replace(optim, total_steps=cfg.steps, warmup_steps=warmup)
    return optim


def _warn_schedule_changes(ckpt: Checkpointer, step: int, config: Mapping[str, Any]) -> None:
    """Warn when the resumed run's learning-rate schedules differ from those it was saved
    with (e.g. ``--steps`` raised under a cosine schedule that follows it)."""
    try:
        saved = ckpt.restore_config(step)
    except CheckpointError:  # a checkpoint saved without its config: nothing to compare
        return
    changes = schedule_changes(saved, config)
    if changes:
        log.warning(
            "resuming at step %d with another learning-rate schedule than the run was "
            "saved with: %s. Training continues from the saved optimizer state under the "
            "new schedule, so the learning rate changes abruptly at step %d; to keep the "
            "old schedule, resume with the saved values (e.g. --train.optim.total-steps)",
            step, "; ".join(changes), step)


def restore_targets(abstract: Any, shardings: Any) -> Any:
    """``abstract`` (the state's shapes) with each array's target sharding, what a
    checkpoint restores into. ``shardings`` leads the map: where ``abstract`` holds a
    leafless node (optax's ``MaskedNode``, a frozen leaf's absent optimizer state),
    ``shardings`` has one placeholder sharding, and the node is kept as it is."""
    return jax.tree.map(
        lambda s, a: (jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
                      if hasattr(a, "shape") else a), shardings, abstract)


def train(
    cfg: TrainConfig,
    *,
    kind: str,
    init_from: str | None = None,
    program: Program,
    train_data: Iterator[Any],
    eval_data: Callable[[], Iterator[Any]] | None = None,
    config: Any = None,
    flops_per_step: float | None = None,
    samples_per_step: int | None = None,
    tokens_per_step: int | None = None,
    on_log: Callable[[int, nnx.Module, Mapping[str, float], RunLogger], None] | None = None,
) -> TrainResult:
    """Run ``program`` (see ``common.train.program.Program``) over ``train_data``.

    ``kind`` names what the run holds (the package that trains it, e.g.
    "tokenizer.alpha"; recorded in ``run_dir/run.json``, see ``common.train.runs``);
    ``init_from`` the run or checkpoint the weights started from, if any. A resumed run
    must be of the same kind.

    ``train_data`` yields host batches (pytrees of arrays whose leading axis is this
    process's share of the global batch); for exact resumption it should have
    ``get_state``/``set_state`` (grain iterators do). ``config`` is the full run config
    (a dataclass or dict) saved with every checkpoint. ``on_log(step, model, metrics,
    logger)`` runs on log steps, e.g. to log audio.
    """
    run_dir = resolve_run_dir(cfg, kind)
    if dataclasses.is_dataclass(config):
        log.info("config:\n%s", format_config(config))
        config_dict = config_to_dict(config)
    else:
        config_dict = dict(config or {"train": config_to_dict(cfg)})
    if program.grad_accum != cfg.grad_accum:
        raise ValueError(
            f"train.grad_accum is {cfg.grad_accum} but the program was built for "
            f"{program.grad_accum} micro-batches: pass grad_accum=cfg.grad_accum to its builder")
    # Before any compiling: resuming another kind's run fails here, with a clear message.
    start_run(run_dir, kind, source=init_from, config=config, write=jax.process_index() == 0)
    mesh = make_mesh(cfg.mesh)
    traced_init = trace_init(program.init)
    abstract = traced_init.abstract
    shardings = state_shardings(abstract, mesh)
    batch_sh = make_batch_sharding(mesh)

    ckpt = Checkpointer(run_dir, cfg.checkpoint)
    start = 0
    if cfg.resume and ckpt.latest_step() is not None:
        targets = restore_targets(abstract, shardings)
        start, items = ckpt.restore(
            program.to_items(targets),
            data_iterator=train_data if hasattr(train_data, "set_state") else None)
        state = program.from_items(items)
        log.info("resumed %s at step %d", run_dir, start)
        _warn_schedule_changes(ckpt, start, config_dict)
    else:
        if cfg.resume:
            log.warning("--resume: no checkpoint in %s yet; starting from scratch", run_dir)
        state = traced_init.build(shardings)
    write_config_json(run_dir, config_dict)

    step_fn = jit_train_step(program.step, shardings, batch_sh)
    warmup_fn = (jit_train_step(program.warmup_step, shardings, batch_sh)
                 if program.warmup_step is not None else None)
    eval_fn = (jax.jit(program.evaluate, in_shardings=(shardings, batch_sh, None))
               if program.evaluate is not None else None)
    model_params = nnx.split_state(program.to_items(abstract)["model"], nnx.Param, ...)[0]
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model_params))
    log.info("run %s: %s parameters, mesh %s, steps %d -> %d", run_dir, f"{n_params:,}",
             dict(mesh.shape), start, cfg.steps)

    history: list[dict[str, float]] = []
    eval_history: list[dict[str, float]] = []
    logger = RunLogger(cfg.logging, run_dir, config_dict, cfg.steps, start_step=start,
                       flops_per_step=flops_per_step, samples_per_step=samples_per_step,
                       tokens_per_step=tokens_per_step)

    def save(step: int, metrics: Mapping[str, float] | None = None, force: bool = False):
        ckpt.save(step, program.to_items(state),
                  data_iterator=train_data if hasattr(train_data, "get_state") else None,
                  config=config_dict, metrics=metrics, force=force)

    def evaluate(step: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        it = eval_data()
        n = 0
        for i, batch in zip(range(cfg.eval_batches), it, strict=False):
            m = jax.device_get(eval_fn(state, host_to_global(batch, mesh),
                                       jax.random.fold_in(jax.random.key(cfg.seed), i)))
            for k, v in m.items():
                if np.ndim(v) == 0:
                    sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        out = {f"eval/{k}": v / max(n, 1) for k, v in sums.items()}
        # A rate over batches is a ratio of sums, not a mean of per-batch ratios: a
        # program reports "<name>_num" and "<name>_den" and gets eval/<name> (e.g. a
        # phoneme error rate, where batches hold different numbers of phonemes).
        for k in [k for k in sums if k.endswith("_num") and k[:-4] + "_den" in sums]:
            den = sums[k[:-4] + "_den"]
            out[f"eval/{k[:-4]}"] = sums[k] / den if den else float("nan")
        logger.log_scalars(step, out)
        eval_history.append({"step": step, **out})
        return out

    stopped = False
    step = start
    # Both checked after every step without a host sync on each (common.train.stopping):
    # the non-finite streak one step late, the stop signal agreed every few seconds.
    nonfinite = NonFiniteWatch(program.nonfinite_run, cfg.max_nonfinite)
    agreement = StopAgreement(cfg.stop_check_seconds, start)
    with StopFlag() as stop, logger:
        if cfg.eval_at_start and start == 0 and eval_fn is not None and eval_data is not None:
            before = evaluate(0)
            if on_log is not None:
                on_log(0, program.model(state), before, logger)
        for step in range(start + 1, cfg.steps + 1):
            batch = host_to_global(next(train_data), mesh)
            logger.maybe_profile(step)
            fn = warmup_fn if warmup_fn is not None and step <= program.warmup_steps else step_fn
            state, metrics = fn(state, batch)
            logger.advance(step)
            log_now = step % cfg.logging.log_every == 0 or step == cfg.steps
            if log_now:
                # Scalars only: per-example diagnostics (e.g. per-sequence CTC) stay out.
                host = {k: float(v) for k, v in jax.device_get(metrics).items()
                        if np.ndim(v) == 0}
                host["nonfinite_total"] = float(program.nonfinite_total(state))
                history.append({"step": step, **host})
                logger.log_scalars(step, host)
                if on_log is not None:
                    on_log(step, program.model(state), host, logger)
            streak = nonfinite.check(step, state, last=step == cfg.steps)
            if streak is not None:
                save(step, force=True)
                ckpt.close()
                raise NonFiniteError(
                    f"{streak[0]} consecutive steps with a non-finite loss or gradient (up "
                    f"to step {streak[1]}); their updates were skipped, the state saved at "
                    f"step {step} in {ckpt.directory}")
            eval_metrics = None
            evaluated = bool(cfg.eval_every and eval_fn is not None and eval_data is not None
                             and step % cfg.eval_every == 0)
            if evaluated:
                eval_metrics = evaluate(step)
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                save(step, eval_metrics)
            # Log and eval steps are where all processes already wait, or just waited long.
            if agreement.should_stop(step, stop.set, force=log_now or evaluated):
                save(step, eval_metrics, force=True)
                stopped = True
                break
        else:
            if cfg.eval_every and eval_fn is not None and eval_data is not None \
                    and cfg.steps % cfg.eval_every:
                evaluate(cfg.steps)
        if not stopped:
            save(step, force=True)
        ckpt.close()
    log.info("%s at step %d; checkpoints in %s", "stopped" if stopped else "finished", step,
             ckpt.directory)
    return TrainResult(run_dir=run_dir, step=step, history=history, eval_history=eval_history,
                       stopped_by_signal=stopped, state=state, program=program)
