import dataclasses
import logging
import os
import shutil
import signal

import jax
import numpy as np
import pytest
from flax import nnx

from common.train.checkpoint import CheckpointConfig, Checkpointer, CheckpointError, load_model
from common.train.logging import LoggingConfig
from common.train.loop import NonFiniteError, TrainConfig, resolve_optim, train
from common.train.mesh import MeshConfig, make_mesh, state_shardings
from common.train.optim import OptimizerConfig, make_optimizer
from common.train.program import supervised_program
from common.train.runs import RunKindError, read_run_info
from tests.common.train.toy import Toy, ToyConfig, ToyIterator, toy_loss

TOY = ToyConfig(dim=16, layers=1, heads=2, kv_heads=1)

# Each test runs the loop for a few steps (a compile of its own, tens of seconds on CPU):
# all but the checkpoint-errors test, the loop's fast check, are slow.


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = TrainConfig(
        steps=8, run_dir=str(tmp_path), run_name="run", mesh=MeshConfig(data=2, fsdp=2, tensor=2),
        optim=OptimizerConfig(name="adamw", lr=3e-3, schedule="cosine", warmup_steps=2,
                              total_steps=8),
        checkpoint=CheckpointConfig(every=4, keep=2, async_save=True),
        logging=LoggingConfig(wandb_mode="disabled", log_every=1, progress=False))
    return dataclasses.replace(base, **kw)


def _train(cfg: TrainConfig, data=None, kind="tests.toy", **kw):
    program = supervised_program(lambda rngs: Toy(TOY, rngs=rngs), toy_loss,
                                 make_optimizer(resolve_optim(cfg)), seed=cfg.seed,
                                 grad_accum=cfg.grad_accum)
    return train(cfg, kind=kind, program=program,
                 train_data=data if data is not None else ToyIterator(seed=1, batch=8),
                 config={"model": dataclasses.asdict(TOY)}, **kw)


def _losses(result, first: int) -> list[float]:
    return [h["loss"] for h in result.history if h["step"] >= first]


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    full = _train(_cfg(tmp_path / "a"))
    assert full.step == 8 and len(full.history) == 8
    _train(_cfg(tmp_path / "b", steps=5))
    resumed = _train(_cfg(tmp_path / "b", steps=8, resume=True))
    assert [h["step"] for h in resumed.history] == [6, 7, 8]
    # Same losses, bit for bit: params, optimizer, step RNG and data position restored.
    assert _losses(resumed, 6) == _losses(full, 6)
    losses = _losses(full, 1)
    assert losses[-1] < losses[0]
    # The run says what it holds; resuming it as another kind fails before any compiling.
    assert read_run_info(resumed.run_dir).kind == "tests.toy"
    with pytest.raises(RunKindError, match=r"is a tests\.toy run"):
        _train(_cfg(tmp_path / "b", steps=9, resume=True), kind="tests.other")


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    def on_log(step, model, metrics, logger):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    result = _train(_cfg(tmp_path), on_log=on_log)
    assert result.stopped_by_signal and result.step == 3
    ckpt = Checkpointer(tmp_path / "run", read_only=True)
    assert ckpt.latest_step() == 3
    # SIGTERM's default handler is back once train() returns.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finished = _train(_cfg(tmp_path, resume=True))
    assert finished.step == 8 and finished.history[0]["step"] == 4


@pytest.mark.slow
def test_nonfinite_losses_stop_with_a_clear_error(tmp_path):
    class NaNData(ToyIterator):
        def __next__(self):
            return dict(super().__next__(), scale=np.full((8,), np.nan, np.float32))

    with pytest.raises(NonFiniteError, match="3 consecutive steps"):
        _train(_cfg(tmp_path, max_nonfinite=3), data=NaNData(batch=8))


@pytest.mark.slow
def test_nonfinite_streak_stops_between_log_steps(tmp_path):
    """Log steps are rare (every 100 here): the streak still stops the run at the step
    it reaches max_nonfinite, read from the device one step late (no sync per step)."""
    class NaNFromStep5(ToyIterator):
        def __next__(self):
            batch = super().__next__()
            if self.position >= 5:  # steps 5, 6, 7, ... (position counts fetched batches)
                batch = dict(batch, scale=np.full((8,), np.nan, np.float32))
            return batch

    quiet = LoggingConfig(wandb_mode="disabled", log_every=100, progress=False)
    with pytest.raises(NonFiniteError, match=r"3 consecutive steps .* \(up to step 7\)"):
        _train(_cfg(tmp_path, steps=20, max_nonfinite=3, logging=quiet,
                    checkpoint=CheckpointConfig(every=100)), data=NaNFromStep5(batch=8))
    assert Checkpointer(tmp_path / "run", read_only=True).latest_step() == 7


@pytest.mark.slow
def test_several_processes_agree_on_sigterm_between_log_steps(tmp_path, monkeypatch):
    """Two processes (the other simulated by a fake all-gather): a SIGTERM during step 7
    stops both at the next agreement, steps before the next log step (100), and the
    agreements are spaced by the gathered step times, not every step."""
    from common.train import stopping

    agreed = []

    def allgather(x):
        agreed.append(True)
        # Both processes report 1/8 of the 5 s agreement interval per step (the real
        # step times, compilation included, vary with the machine), so the interval
        # doubles from 1 up to 8 steps: agreements at steps 1, 3, 7, 15, ...
        return np.asarray([[x[0], 5.0 / 8], [0.0, 5.0 / 8]])

    monkeypatch.setattr(stopping, "_process_count", lambda: 2)
    monkeypatch.setattr(stopping, "_allgather", allgather)

    class SignalAtStep7(ToyIterator):
        def __next__(self):
            if self.position == 6:  # fetching step 7's batch
                os.kill(os.getpid(), signal.SIGTERM)
            return super().__next__()

    quiet = LoggingConfig(wandb_mode="disabled", log_every=100, progress=False)
    result = _train(_cfg(tmp_path, steps=50, logging=quiet, stop_check_seconds=5.0,
                         checkpoint=CheckpointConfig(every=100)), data=SignalAtStep7(batch=8))
    # the signal of step 7 is honoured at the agreement of step 7, the third
    assert result.stopped_by_signal and result.step == 7
    assert len(agreed) == 3  # at 1, 3 and 7
    assert Checkpointer(tmp_path / "run", read_only=True).latest_step() == result.step


@pytest.mark.slow
def test_eval_and_best_checkpoint(tmp_path):
    def eval_data():
        return ToyIterator(seed=99, batch=8)

    cfg = _cfg(tmp_path, eval_every=2, eval_batches=2,
               checkpoint=CheckpointConfig(every=2, keep=1, keep_best=1))
    result = _train(cfg, eval_data=eval_data)
    evals = {h["step"]: h["eval/loss"] for h in result.eval_history}
    assert sorted(evals) == [2, 4, 6, 8]
    ckpt = Checkpointer(tmp_path / "run", cfg.checkpoint, read_only=True)
    best = min(evals, key=evals.get)
    assert ckpt.best_step() == best
    assert set(ckpt.all_steps()) == {best, 8}  # latest 1 + best 1


@pytest.mark.slow
def test_load_model_from_run_dir_onto_a_mesh(tmp_path):
    result = _train(_cfg(tmp_path, steps=2))
    build = lambda c: Toy(ToyConfig(**c["model"]), rngs=nnx.Rngs(123))
    model, config = load_model(tmp_path / "run", build)
    assert config["model"]["dim"] == TOY.dim
    trained = jax.device_get(result.state.params)
    loaded = nnx.state(model, nnx.Param)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(trained), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    sharded, _ = load_model(tmp_path / "run", build, shardings=lambda s: state_shardings(s, mesh))
    k = sharded.body.layers.ffn.wi_0.kernel[...]
    assert k.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints directory"):
        load_model(tmp_path / "nothing", lambda c: Toy(TOY, rngs=nnx.Rngs(0)))
    _train(_cfg(tmp_path, steps=2))
    wrong = lambda c: Toy(dataclasses.replace(TOY, dim=24), rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError,
                       match=r"model: body/final_norm/scale has shape \(16,\), the model "
                             r"\(from its config\) expects \(24,\)"):
        load_model(tmp_path / "run", wrong)
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "2" / "train")
    with pytest.raises(CheckpointError, match="partial: missing \\['train'\\]"):
        _train(_cfg(tmp_path, resume=True))


@pytest.mark.slow
def test_toy_run_with_offline_wandb_and_progress_bar(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest disables W&B
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))

    def on_log(step, model, metrics, logger):
        x = ToyIterator(seed=5, batch=1).__next__()["x"]
        wav = np.asarray(model(x))[0, :, 0]
        logger.log_audio(step, "audio/pred", np.tile(wav, 100), 16_000)
        logger.log_spectrogram(step, "spec/input", x[0])

    cfg = _cfg(tmp_path, steps=4, logging=LoggingConfig(wandb_mode="offline", log_every=2,
                                                        progress=True))
    result = _train(cfg, on_log=on_log)
    runs = list((result.run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    assert (result.run_dir / "config.json").exists()
    assert (result.run_dir / "checkpoints" / "4").is_dir()
    # Without a TTY the progress bar becomes one console line per log step.
    assert "step 4/4" in caplog.text and "steps/s" in caplog.text


def test_grad_accum_the_program_was_not_built_for_fails(tmp_path):
    # A program built for one micro-batch must not silently run a grad_accum=2 config.
    program = supervised_program(lambda rngs: Toy(TOY, rngs=rngs), toy_loss,
                                 make_optimizer(_cfg(tmp_path).optim))
    with pytest.raises(ValueError, match=r"train\.grad_accum is 2"):
        train(_cfg(tmp_path, grad_accum=2), kind="tests.toy", program=program,
              train_data=ToyIterator(seed=1, batch=8))
    assert not (tmp_path / "run").exists()  # a refused start leaves no run behind


@pytest.mark.slow
def test_resume_with_more_steps_warns_that_the_schedule_changes(tmp_path, caplog):
    from common.config import config_to_dict

    def run(steps, resume):
        # total_steps unset: the cosine schedule follows train.steps
        cfg = _cfg(tmp_path, steps=steps, resume=resume, checkpoint=CheckpointConfig(every=2),
                   optim=OptimizerConfig(name="adamw", lr=3e-3, schedule="cosine"))
        program = supervised_program(lambda rngs: Toy(TOY, rngs=rngs), toy_loss,
                                     make_optimizer(resolve_optim(cfg)), seed=cfg.seed)
        return train(cfg, kind="tests.toy", program=program,
                     train_data=ToyIterator(seed=1, batch=8),
                     config={"train": config_to_dict(cfg)})

    run(2, False)
    with caplog.at_level(logging.WARNING, logger="common.train.loop"):
        run(3, True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("train.optim: total_steps 2 -> 3 (unset: follows train.steps)" in w
               for w in warnings), warnings


@pytest.mark.slow
def test_eval_at_start_and_rates_as_ratios_of_sums(tmp_path):
    # eval_at_start evaluates (and calls on_log) before step 1; a metric pair
    # <name>_num / <name>_den becomes eval/<name> = sum(num) / sum(den) over the eval
    # batches, not the mean of per-batch ratios.
    import jax.numpy as jnp

    def loss_with_rate(model, batch, rng):
        loss, m = toy_loss(model, batch, rng)
        den = jnp.sum(batch["x"][..., 0] > 0).astype(jnp.float32)  # differs per batch
        return loss, {**m, "err_num": loss * den, "err_den": den}

    cfg = _cfg(tmp_path, steps=2, eval_every=2, eval_batches=3, eval_at_start=True,
               checkpoint=CheckpointConfig(every=0))
    program = supervised_program(lambda rngs: Toy(TOY, rngs=rngs), loss_with_rate,
                                 make_optimizer(resolve_optim(cfg)), seed=cfg.seed)
    seen = []
    result = train(cfg, kind="tests.toy", program=program,
                   train_data=ToyIterator(seed=1, batch=8),
                   eval_data=lambda: ToyIterator(seed=99, batch=8),
                   on_log=lambda step, model, metrics, logger: seen.append(step))
    assert [h["step"] for h in result.eval_history] == [0, 2] and seen[0] == 0
    for h in result.eval_history:
        np.testing.assert_allclose(h["eval/err"], h["eval/err_num"] / h["eval/err_den"],
                                   rtol=1e-6)
