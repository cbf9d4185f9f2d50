"""Orbax checkpoints: the train state, the data iterator and the config, together.

Layout of a run directory::

    run_dir/run.json                    what the run holds (``common.train.runs``)
    run_dir/config.json                 the run's config (also inside every checkpoint)
    run_dir/checkpoints/<step>/model    the model's state (parameters and other variables)
    run_dir/checkpoints/<step>/train    optimizer state, step, RNG, counters
    run_dir/checkpoints/<step>/data     the data iterator's state (JSON)
    run_dir/checkpoints/<step>/config   the config (JSON)

Any set of named pytrees can be saved; the train loop uses ``model`` and ``train``, and
``load_model`` reads ``model`` alone.

Saving is asynchronous (training continues while the arrays are written). Retention
keeps the latest ``keep`` checkpoints plus the ``keep_best`` best by ``best_metric``.
Restoring goes straight into the target shardings given by an abstract state, so a
model trained on one mesh loads onto another.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from orbax.checkpoint import checkpoint_managers as ocm

from common.train.configs import CheckpointConfig
from common.train.tree import path_to_str

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial, or does not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------
# Typed PRNG keys are not serialisable: store their raw key data instead.


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_saveable(tree: Any) -> Any:
    """Replace typed PRNG key arrays (concrete or abstract) by their ``uint32`` key data."""
    def leaf(x: Any) -> Any:
        if not _is_key(x):
            return x
        if isinstance(x, jax.ShapeDtypeStruct):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
        return jax.random.key_data(x)
    return jax.tree.map(leaf, tree)


def from_saveable(tree: Any, like: Any) -> Any:
    """Undo ``to_saveable`` wherever ``like`` holds a typed key (default key impl when
    ``like`` is abstract)."""
    def leaf(x: Any, ref: Any) -> Any:
        if not _is_key(ref):
            return x
        impl = jax.random.key_impl(ref) if isinstance(ref, jax.Array) else None
        return jax.random.wrap_key_data(x, impl=impl)
    return jax.tree.map(leaf, tree, like)


def abstract_of(tree: Any) -> Any:
    """``ShapeDtypeStruct``s (with shardings) of a concrete or abstract pytree."""
    def leaf(x: Any) -> Any:
        if not hasattr(x, "shape"):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
    return jax.tree.map(leaf, tree)


# ---------------------------------------------------------------------------------------
# Data iterator state: grain iterators give a dict (dataset API) or bytes (DataLoader).


def _iterator_state(it: Any) -> dict:
    state = it.get_state()
    if isinstance(state, bytes):
        return {"bytes_b64": base64.b64encode(state).decode()}
    return {"state": state}


def _set_iterator_state(it: Any, saved: Mapping[str, Any]) -> None:
    if "bytes_b64" in saved:
        it.set_state(base64.b64decode(saved["bytes_b64"]))
    else:
        it.set_state(saved["state"])


# ---------------------------------------------------------------------------------------


class Checkpointer:
    """Save and restore named pytrees plus the data iterator and the config."""

    def __init__(self, run_dir: str | Path, cfg: CheckpointConfig = CheckpointConfig(),
                 *, read_only: bool = False):
        self.run_dir = Path(run_dir).absolute()
        self.directory = self.run_dir / "checkpoints"
        self.cfg = cfg
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints directory at {self.directory}")
        sign = -1.0 if cfg.best_mode == "min" else 1.0
        metric = cfg.best_metric
        policies: list[Any] = [ocm.LatestN(n=cfg.keep)]
        if cfg.keep_best:
            policies.append(ocm.BestN(get_metric_fn=lambda m: sign * float(m[metric]),
                                      n=cfg.keep_best, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=cfg.async_save,
            preservation_policy=ocm.AnyPreservationPolicy(policies=policies),
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    # -- saving -------------------------------------------------------------------------

    def save(self, step: int, items: Mapping[str, Any], *, data_iterator: Any = None,
             config: Mapping[str, Any] | None = None,
             metrics: Mapping[str, float] | None = None, force: bool = False) -> bool:
        """Save the pytrees in ``items`` (asynchronously) at ``step``.

        ``metrics`` must hold ``best_metric`` for the checkpoint to compete for "best";
        other metrics are dropped. Returns whether a save was started.
        """
        if step in self.manager.all_steps():
            return False
        kept = None
        if metrics is not None and self.cfg.best_metric in metrics:
            kept = {self.cfg.best_metric: float(metrics[self.cfg.best_metric])}
        args = {name: ocp.args.StandardSave(to_saveable(tree)) for name, tree in items.items()}
        if kept is not None:  # our own record: orbax only writes metrics with a best_fn
            args["scores"] = ocp.args.JsonSave(kept)
        if data_iterator is not None:
            args["data"] = ocp.args.JsonSave(_iterator_state(data_iterator))
        if config is not None:
            args["config"] = ocp.args.JsonSave(dict(config))
        saved = self.manager.save(step, args=ocp.args.Composite(**args), metrics=kept,
                                  force=force)
        if saved:
            log.info("checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    # -- restoring ----------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The saved step with the best ``best_metric`` (None if none recorded one)."""
        sign = -1.0 if self.cfg.best_mode == "min" else 1.0
        scored = []
        for step in self.all_steps():
            path = self.directory / str(step) / "scores" / "metadata"
            if path.exists():
                m = json.loads(path.read_text())
                if self.cfg.best_metric in m:
                    scored.append((sign * float(m[self.cfg.best_metric]), step))
        return max(scored)[1] if scored else None

    def resolve_step(self, step: int | Literal["latest", "best"] | None = None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        if step is None or step == "latest":
            return steps[-1]
        if step == "best":
            best = self.best_step()
            if best is None:
                raise CheckpointError(f"no checkpoint in {self.directory} recorded "
                                      f"{self.cfg.best_metric!r}")
            return best
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; "
                                  f"available: {steps}")
        return int(step)

    def has_item(self, name: str, step: int | Literal["latest", "best"] | None = None) -> bool:
        """Whether the checkpoint at ``step`` holds the item ``name`` (e.g. ``"ema"``)."""
        return (self.directory / str(self.resolve_step(step)) / name).exists()

    def _check_items(self, step: int, wanted: tuple[str, ...]) -> None:
        step_dir = self.directory / str(step)
        missing = [w for w in wanted if not (step_dir / w).exists()]
        if missing:
            raise CheckpointError(f"checkpoint {step_dir} is partial: missing {missing} "
                                  f"(has {sorted(p.name for p in step_dir.iterdir())})")

    def _check_shapes(self, step: int, name: str, target: Any) -> None:
        """Compare saved array shapes with the target's, naming the first mismatch."""
        # Read the item's metadata directly: a fresh (e.g. read-only) manager has no
        # handler registered for it yet and would report nothing.
        meta = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory / str(step)
                                                                   / name))
        saved = {path_to_str(p): tuple(getattr(m, "shape", ()))
                 for p, m in jax.tree_util.tree_flatten_with_path(meta)[0]}
        want = {path_to_str(p): tuple(getattr(t, "shape", ()))
                for p, t in jax.tree_util.tree_flatten_with_path(target)[0]}
        where = self.directory / str(step) / name
        missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
        if missing or extra:
            raise CheckpointError(
                f"checkpoint {where} does not fit the model: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                f"{' ...' if len(extra) > 5 else ''}")
        for key, shape in want.items():
            if saved[key] != shape:
                raise CheckpointError(f"checkpoint {where}: {key} has shape {saved[key]}, "
                                      f"the model (from its config) expects {shape}")

    def restore(self, abstract_items: Mapping[str, Any], *,
                step: int | Literal["latest", "best"] | None = None,
                data_iterator: Any = None) -> tuple[int, dict[str, Any]]:
        """Restore the named pytrees (into their shardings) and the data iterator.

        ``abstract_items`` maps item names to the structures to fill: concrete arrays or
        ``ShapeDtypeStruct``s with shardings (``abstract_of``). Items not named are not
        read. Returns ``(step, {name: tree})``.
        """
        step = self.resolve_step(step)
        self._check_items(step, tuple(abstract_items) +
                          (("data",) if data_iterator is not None else ()))
        args: dict[str, Any] = {}
        for name, tree in abstract_items.items():
            target = abstract_of(to_saveable(abstract_of(tree)))
            self._check_shapes(step, name, target)
            args[name] = ocp.args.StandardRestore(target)
        if data_iterator is not None:
            args["data"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        out = {name: from_saveable(restored[name], tree) for name, tree in abstract_items.items()}
        if data_iterator is not None:
            _set_iterator_state(data_iterator, restored["data"])
        log.info("checkpoint: restored step %d (%s) from %s", step, ", ".join(out),
                 self.directory)
        return step, out

    def restore_config(self, step: int | Literal["latest", "best"] | None = None) -> dict:
        step = self.resolve_step(step)
        self._check_items(step, ("config",))
        return dict(self.manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])


def write_config_json(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """``run_dir/config.json`` (process 0 only), next to the checkpoints."""
    path = Path(run_dir) / "config.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(config), indent=2, sort_keys=True))
    return path


def load_model(
    run_dir: str | Path,
    build: Callable[[Mapping[str, Any]], nnx.Module],
    *,
    step: int | Literal["latest", "best"] | None = None,
    shardings: Callable[[Any], Any] | None = None,
    item: str | Sequence[str] = "model",
) -> tuple[nnx.Module, dict]:
    """A model from a run directory alone: its config from the checkpoint, then weights.

    ``build(config_dict)`` constructs the model; it runs under ``nnx.eval_shape``, so no
    memory goes to a throw-away initialisation. ``shardings(abstract_state)`` may give
    target shardings (e.g. ``lambda s: state_shardings(s, mesh)``) so the weights load
    straight onto a mesh. Only one item is read (no optimizer state): ``item``, or the
    first of a sequence of names that the checkpoint holds (``("ema", "model")``: the
    EMA weights of a GAN run that kept them, else the trained ones); use it for
    inference or to freeze one stage inside another model.

    Returns ``(model, config_dict)``.
    """
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        names = (item,) if isinstance(item, str) else tuple(item)
        name = next((n for n in names if ckpt.has_item(n, step)), names[-1])
        config = ckpt.restore_config(step)
        graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: build(config)))
        if shardings is not None:
            abstract_state = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                abstract_state, shardings(abstract_state))
        _, restored = ckpt.restore({name: abstract_state}, step=step)
    finally:
        ckpt.manager.close()
    return nnx.merge(graphdef, restored[name]), config
