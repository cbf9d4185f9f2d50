"""RunLogger: W&B offline files, modes, resume, throughput, console lines, no-op ranks."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import common.train.logging as tl
from common.train.logging import LoggingConfig, RunLogger, resolve_wandb_mode


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def wandb_in_tmp(tmp_path, monkeypatch):
    """Keep every W&B file (cache, config, logs) inside the test's tmp dir."""
    root = tmp_path / "wandb_home"
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR",
                "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(root / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return root


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest sets "disabled"


def offline_files(run_dir):
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.slow  # a W&B offline run end to end
def test_offline_run_logs_everything(tmp_path, offline, caplog):
    caplog.set_level(logging.INFO, logger="common.train.logging")
    run_dir = tmp_path / "run"
    clock = FakeClock()
    cfg = LoggingConfig(wandb_mode="offline", progress=False)
    with RunLogger(cfg, run_dir, {"model": {"dim": 8}}, total_steps=100, clock=clock,
                   samples_per_step=4, tokens_per_step=400, flops_per_step=1e9) as logger:
        assert logger.mode == "offline" and logger.run_id
        clock.t += 2.0
        row = logger.log_scalars(10, {"loss": jnp.float32(1.5), "grad_norm": 0.25})
        assert row["loss"] == 1.5 and row["grad_norm"] == 0.25
        assert row["perf/steps_per_s"] == pytest.approx(5.0)
        assert row["perf/samples_per_s"] == pytest.approx(20.0)
        assert row["perf/tokens_per_s"] == pytest.approx(2000.0)
        assert "perf/mfu" not in row  # CPU: no known peak
        clock.t += 4.0
        row = logger.log_scalars(30, {"loss": jnp.asarray([0.5])})
        assert row["perf/steps_per_s"] == pytest.approx(5.0) and row["loss"] == 0.5
        t = np.arange(1600) / 16000
        logger.log_audio(30, "audio/sine", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
        logger.log_audio(30, "audio/col", np.zeros((800, 1)), 16000)
        logger.log_image(30, "image/grey", np.random.default_rng(0).random((8, 12)))
        logger.log_image(30, "image/rgb", np.zeros((8, 12, 3), np.uint8))
        logger.log_spectrogram(30, "spec/mel", np.random.default_rng(1).random((20, 10)))
        logger.log_text(30, "text/sample", "hello <world>")
        logger.log_summary({"final_loss": jnp.float32(0.5)})
        with pytest.raises(ValueError, match="metric 'vec' must be a scalar"):
            logger.log_scalars(40, {"vec": np.ones(3)})
    assert (run_dir / "wandb_id.txt").read_text().strip() == logger.run_id
    files = offline_files(run_dir)
    runs = [f for f in files if f.startswith("wandb/offline-run-") and f.endswith(".wandb")]
    assert len(runs) == 1 and logger.run_id in runs[0]
    media = [f.split("/files/media/")[1] for f in files if "/files/media/" in f]
    assert sum(f.startswith("audio/") and f.endswith(".wav") for f in media) == 2, media
    # Images and spectrograms are wandb.Image files named after their key.
    for name in ("image/grey", "image/rgb", "spec/mel", "text/sample"):
        assert any(name in f for f in media), (name, media)
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("step 30/100 | loss 0.5 | 5 steps/s | eta 0:14") for m in lines)
    assert any("final_loss=0.5" in m for m in lines)


def test_mfu_when_peak_known(tmp_path, monkeypatch):
    monkeypatch.setattr(tl, "peak_flops", lambda: 1e12)
    clock = FakeClock()
    logger = RunLogger(LoggingConfig(progress=False), tmp_path, {}, 10, clock=clock,
                       flops_per_step=1e11)
    clock.t += 1.0
    row = logger.log_scalars(2, {"loss": 1.0})
    assert row["perf/mfu"] == pytest.approx(2 * 1e11 / (1e12 * jax.device_count()))
    logger.close()


def test_disabled_wandb_still_keeps_the_local_record(tmp_path, wandb_in_tmp):
    # W&B off: nothing of W&B's, but the run directory keeps the metric history, its
    # curves and the logged media (what a user without W&B looks at).
    from common.train.curves import read_metrics

    run_dir = tmp_path / "run"
    with RunLogger(LoggingConfig(wandb_mode="disabled"), run_dir, {}, 10) as logger:
        assert logger.mode == "disabled" and logger.run_id is None
        logger.log_scalars(1, {"loss": 1.0})
        logger.log_scalars(2, {"loss": 0.5, "eval/loss": 0.75})
        logger.log_audio(2, "audio/0_recon", np.zeros(10), 16000)
        logger.log_spectrogram(2, "mel/0_recon", np.zeros((4, 4)))
        logger.log_text(2, "t", "x")
    assert not wandb_in_tmp.exists() and not (run_dir / "wandb").exists()
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["eval/loss"] == 0.75
    assert rows[1]["time"] >= rows[0]["time"] >= 0
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    media = run_dir / "media" / "step_0000002"
    assert sorted(p.name for p in media.iterdir()) == ["audio_0_recon.wav", "mel_0_recon.png"]


def test_resumed_logger_drops_redone_rows_and_carries_the_wall_time(tmp_path, wandb_in_tmp):
    from common.train.curves import read_metrics

    cfg = LoggingConfig(wandb_mode="disabled", progress=False)
    ticks = iter(range(0, 1000, 10))
    with RunLogger(cfg, tmp_path, {}, 10, clock=lambda: float(next(ticks))) as logger:
        for step in (2, 4, 6):
            logger.log_scalars(step, {"loss": 1.0 / step})
    # the checkpoint was at step 4: step 6 is redone after the resumption
    with RunLogger(cfg, tmp_path, {}, 10, start_step=4,
                   clock=lambda: float(next(ticks))) as logger:
        logger.log_scalars(6, {"loss": 0.1})
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[-1]["loss"] == 0.1
    assert rows[-1]["time"] > rows[1]["time"]


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_env_overrides_config(monkeypatch, tmp_path):
    # conftest's WANDB_MODE=disabled beats an "offline" config.
    cfg = LoggingConfig(wandb_mode="offline")
    assert resolve_wandb_mode(cfg) == "disabled"
    with RunLogger(cfg, tmp_path / "run", {}, 10) as logger:
        assert logger.mode == "disabled" and logger._run is None
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode(LoggingConfig(wandb_mode="disabled")) == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    disabled = LoggingConfig(wandb_mode="disabled", progress=False)
    with RunLogger(disabled, tmp_path / "run", {}, 10) as logger:
        assert logger.mode == "offline" and logger.run_id
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb"))
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_wandb_mode(cfg) == "offline"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_wandb_mode(cfg)


def test_resume_reuses_run_id(tmp_path, offline):
    run_dir = tmp_path / "run"
    cfg = LoggingConfig(progress=False)
    with RunLogger(cfg, run_dir, {"a": 1}, 10) as first:
        first.log_scalars(2, {"loss": 1.0})
    with RunLogger(cfg, run_dir, {"a": 1}, 10, start_step=5) as second:
        second.log_scalars(6, {"loss": 0.5})
    assert second.run_id == first.run_id
    with RunLogger(cfg, tmp_path / "other", {}, 10, resume_id=first.run_id) as third:
        pass
    assert third.run_id == first.run_id
    assert (tmp_path / "other" / "wandb_id.txt").read_text().strip() == first.run_id


def test_progress_bar_postfix(tmp_path, monkeypatch):
    monkeypatch.setattr(tl, "_stderr_is_tty", lambda: True)
    clock = FakeClock()
    logger = RunLogger(LoggingConfig(), tmp_path, {}, 50, start_step=10, clock=clock)
    assert logger._bar is not None and logger._bar.n == 10
    logger.advance(11)
    logger.advance(12)
    assert logger._bar.n == 12
    clock.t += 1.0
    logger.log_scalars(20, {"loss": jnp.float32(2.0)})
    assert logger._bar.n == 20
    assert "loss=2" in logger._bar.postfix and "steps/s=10" in logger._bar.postfix
    logger.log_scalars(20, {"eval/loss": 3.0})  # same step: no new throughput
    assert "loss=2" in logger._bar.postfix and "eval/loss=3" in logger._bar.postfix
    logger.close()
    logger.close()


def test_other_processes_are_no_ops(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(tl, "_stderr_is_tty", lambda: True)
    cfg = LoggingConfig(profile_steps=(1, 2))
    with RunLogger(cfg, tmp_path / "run", {}, 10) as logger:
        assert not logger.active and logger._bar is None and logger._run is None
        assert logger.log_scalars(1, {"loss": 1.0}) == {}
        logger.advance(3)
        logger.maybe_profile(1)
        logger.log_audio(1, "a", np.zeros(10), 16000)
        logger.log_image(1, "i", np.zeros((2, 2)))
        logger.log_summary({"x": 1})
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_close_idempotent(tmp_path, offline):
    logger = RunLogger(LoggingConfig(progress=False), tmp_path / "run", {}, 10)
    logger.close()
    logger.close()
    with logger:
        pass


def test_profiler_window(tmp_path):
    cfg = LoggingConfig(profile_steps=(2, 4), progress=False)
    with RunLogger(cfg, tmp_path, {}, 10) as logger:
        for step in range(6):
            logger.maybe_profile(step)
            jax.block_until_ready(jnp.ones(4) * step)
            assert logger._tracing == (2 <= step < 4)
    assert any((tmp_path / "profile").rglob("*.xplane.pb"))


def test_config_validation():
    with pytest.raises(ValueError, match="log_every"):
        LoggingConfig(log_every=0)
    with pytest.raises(ValueError, match="profile_steps"):
        LoggingConfig(profile_steps=(5, 5))
    cfg = LoggingConfig(log_every=10, audio_every=100)
    logger = RunLogger(cfg, "unused", {}, 10)  # disabled by conftest: touches nothing
    assert logger.should_log(20) and not logger.should_log(21)
    assert logger.should_log_media(200) and not logger.should_log_media(20)
    assert not RunLogger(LoggingConfig(), "unused", {}, 1).should_log_media(0)
