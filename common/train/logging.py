"""Run logging: W&B (offline by default), the plain ``metrics.jsonl`` history and its
``curves.png`` (``common.train.curves``), a console progress bar, a profiler window.

``RunLogger`` is the one object a training loop talks to. Only process 0 logs; on the
other processes every method is a no-op, so call sites need no ``if`` of their own.
Device arrays reach ``log_scalars`` only on log steps, and are pulled to host there.
Images and spectrograms are rendered to uint8 arrays by ``common.train.render`` and
logged as ``wandb.Image``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import string
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from common.train.configs import LoggingConfig
from common.train.curves import METRICS_FILE, plot_run, truncate_after
from common.train.hardware import peak_flops
from common.train.render import encode_png, render_spectrogram, to_uint8_image

log = logging.getLogger(__name__)

__all__ = ["LoggingConfig", "RunLogger", "resolve_wandb_mode"]

WANDB_MODES = ("offline", "online", "disabled")
# Aliases wandb itself accepts in WANDB_MODE.
_MODE_ALIASES = {"dryrun": "offline", "run": "online", "shared": "online"}


def resolve_wandb_mode(cfg: LoggingConfig) -> str:
    """The W&B mode to use: ``$WANDB_MODE`` if set, else ``cfg.wandb_mode``."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if not env:
        return cfg.wandb_mode
    mode = _MODE_ALIASES.get(env, env)
    if mode not in WANDB_MODES:
        raise ValueError(f"WANDB_MODE={env!r} is not one of {WANDB_MODES}")
    return mode


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


class RunLogger:
    """Scalars, media, progress and profiling for one run. Use as a context manager.

    ``flops_per_step`` counts one whole step over all devices; MFU divides by the peak
    of ``jax.device_count()`` devices (only for devices ``common.train.hardware`` knows).
    Throughput is measured between consecutive ``log_scalars`` calls with ``clock``.
    """

    def __init__(
        self,
        cfg: LoggingConfig,
        run_dir: str | os.PathLike,
        config_dict: dict,
        total_steps: int,
        *,
        start_step: int = 0,
        flops_per_step: float | None = None,
        samples_per_step: int | None = None,
        tokens_per_step: int | None = None,
        resume_id: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.flops_per_step = flops_per_step
        self.samples_per_step = samples_per_step
        self.tokens_per_step = tokens_per_step
        self.active = jax.process_index() == 0
        self.mode = resolve_wandb_mode(cfg)
        self.run_id: str | None = None
        self.latest: dict[str, float] = {}
        self._clock = clock
        self._last_step, self._last_time = start_step, clock()
        self._run: Any = None
        self._bar: Any = None
        self._postfix: dict[str, str] = {}
        self._redirect: Any = None
        self._tracing = False
        self._trace_done = False
        self._closed = False
        self._peak = None
        if not self.active:
            return
        _ensure_console_handler()
        if flops_per_step is not None:
            peak = peak_flops()
            self._peak = peak * jax.device_count() if peak else None
        # The plain metric history (common.train.curves); a resumed run drops the rows
        # after its checkpoint and carries the wall time on.
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        kept = truncate_after(self.metrics_path, start_step) if start_step else []
        if not start_step:
            self.metrics_path.unlink(missing_ok=True)
        self._time_offset = float(kept[-1].get("time", 0.0)) if kept else 0.0
        self._started = clock()
        if self.mode != "disabled":
            self._run = self._init_wandb(config_dict, resume_id)
        if cfg.progress and _stderr_is_tty():
            self._redirect = logging_redirect_tqdm(loggers=[logging.root, log])
            self._redirect.__enter__()
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step",
                             dynamic_ncols=True, mininterval=0.5)

    def _init_wandb(self, config_dict: dict, resume_id: str | None) -> Any:
        import wandb  # ~1 s import; only paid when W&B is on

        self.run_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.run_dir / "wandb_id.txt"
        stored = id_file.read_text().strip() if id_file.exists() else None
        run_id = resume_id or stored or _new_run_id()
        id_file.write_text(run_id + "\n")
        run = wandb.init(
            mode=self.mode,
            dir=str(self.run_dir),  # wandb adds the "wandb" folder itself
            project=self.cfg.project,
            entity=self.cfg.entity,
            name=self.cfg.run_name or self.run_dir.name,
            id=run_id,
            resume="allow",
            config=config_dict,
            allow_val_change=True,  # a resumed run may change e.g. total steps
        )
        self.run_id = run.id
        log.info("W&B %s run %s in %s", self.mode, run.id, self.run_dir / "wandb")
        return run

    # --------------------------------------------------------------- scheduling

    def should_log(self, step: int) -> bool:
        return step % self.cfg.log_every == 0

    def should_log_media(self, step: int) -> bool:
        return self.cfg.audio_every > 0 and step % self.cfg.audio_every == 0

    # ------------------------------------------------------------------ scalars

    def log_scalars(self, step: int, metrics: Mapping[str, float | jax.Array]) -> dict[str, float]:
        """Pull ``metrics`` to host, add throughput, log them; returns the logged row."""
        if not self.active:
            return {}
        row = _to_host(metrics)
        now = self._clock()
        dt, dsteps = now - self._last_time, step - self._last_step
        if dt > 0 and dsteps > 0:
            sps = dsteps / dt
            row["perf/steps_per_s"] = sps
            if self.samples_per_step:
                row["perf/samples_per_s"] = sps * self.samples_per_step
            if self.tokens_per_step:
                row["perf/tokens_per_s"] = sps * self.tokens_per_step
            if self.flops_per_step is not None and self._peak:
                row["perf/mfu"] = self.flops_per_step * sps / self._peak
        self._last_step, self._last_time = step, now
        self.latest = row
        if self._run is not None:
            self._run.log(row, step=step)
        with open(self.metrics_path, "a") as f:
            elapsed = self._time_offset + now - self._started
            f.write(json.dumps({"step": step, "time": round(elapsed, 3), **row}) + "\n")
        losses = {k: v for k, v in row.items() if k == "loss" or k.endswith("/loss")}
        sps = row.get("perf/steps_per_s")
        if self._bar is not None:
            self.advance(step)
            # Kept across calls, so an eval row does not wipe the training loss.
            self._postfix.update({k: f"{v:.4g}" for k, v in losses.items()})
            if sps is not None:
                self._postfix["steps/s"] = f"{sps:.3g}"
            self._bar.set_postfix(self._postfix, refresh=False)
        else:
            parts = [f"step {step}/{self.total_steps}"]
            parts += [f"{k} {v:.4g}" for k, v in losses.items()]
            if sps is not None:
                parts.append(f"{sps:.3g} steps/s")
                if step < self.total_steps:
                    parts.append(f"eta {_fmt_duration((self.total_steps - step) / sps)}")
            log.info(" | ".join(parts))
        return row

    def advance(self, step: int) -> None:
        """Move the progress bar to ``step`` (cheap: call it every step)."""
        if self._bar is not None and step > self._bar.n:
            self._bar.update(step - self._bar.n)

    # -------------------------------------------------------------------- media

    def log_audio(self, step: int, name: str, wav: np.ndarray, sample_rate: int,
                  caption: str | None = None) -> None:
        """A mono waveform ``[N]`` or ``[N, 1]``, float in [-1, 1] (clipped); also written
        to ``run_dir/media/step_<step>/<name>.wav``."""
        if not self.active:
            return
        wav = np.asarray(wav, np.float32)
        if wav.ndim == 2 and wav.shape[1] == 1:
            wav = wav[:, 0]
        if wav.ndim != 1:
            raise ValueError(f"log_audio({name!r}): expected [N] or [N, 1], got {wav.shape}")
        wav = np.clip(np.nan_to_num(wav), -1.0, 1.0)
        import soundfile as sf

        sf.write(self.media_path(step, name, ".wav"), wav, sample_rate, subtype="PCM_16")
        if self._run is None:
            return
        import wandb

        self._run.log({name: wandb.Audio(wav, sample_rate=sample_rate, caption=caption)},
                      step=step)

    def log_image(self, step: int, name: str, image: np.ndarray,
                  caption: str | None = None) -> None:
        """``HxW`` or ``HxWx3``; floats are min-max normalised, uint8 is kept. Also written
        to ``run_dir/media/step_<step>/<name>.png``."""
        if not self.active:
            return
        image = to_uint8_image(image)
        self.media_path(step, name, ".png").write_bytes(encode_png(image))
        if self._run is None:
            return
        import wandb

        self._run.log({name: wandb.Image(image, caption=caption)}, step=step)

    def media_path(self, step: int, name: str, suffix: str) -> Path:
        """Where a logged medium lands in the run directory (made on demand)."""
        folder = self.run_dir / "media" / f"step_{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (name.replace("/", "_") + suffix)

    def log_spectrogram(self, step: int, name: str, spec: np.ndarray,
                        caption: str | None = None) -> None:
        """``[frames, bins]`` (e.g. a log-mel) as a colour image, low bins at the bottom."""
        if not self.active:
            return
        self.log_image(step, name, render_spectrogram(spec), caption)

    def log_text(self, step: int, name: str, text: str) -> None:
        if self._run is None:
            return
        import wandb

        self._run.log({name: wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Final figures: W&B run summary and one console line."""
        if not self.active:
            return
        values = {k: _maybe_host(v) for k, v in summary.items()}
        if self._run is not None:
            self._run.summary.update(values)
        log.info("summary: %s", ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))

    # ---------------------------------------------------------------- profiling

    def maybe_profile(self, step: int) -> None:
        """Start the trace at ``profile_steps[0]``, stop it at ``profile_steps[1]``.

        Steps are dispatched asynchronously: the trace holds the work dispatched
        between the call at ``start`` and the call at ``stop`` (or ``close``).
        """
        if not self.active or self.cfg.profile_steps is None:
            return
        start, stop = self.cfg.profile_steps
        if not self._tracing and not self._trace_done and start <= step < stop:
            trace_dir = self.run_dir / "profile"
            trace_dir.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(trace_dir))
            self._tracing = True
            log.info("profiler: tracing steps %d-%d to %s", step, stop, trace_dir)
        elif self._tracing and step >= stop:
            self._stop_trace()

    def _stop_trace(self) -> None:
        jax.profiler.stop_trace()
        self._tracing, self._trace_done = False, True
        log.info("profiler: trace written to %s", self.run_dir / "profile")

    # ------------------------------------------------------------------ closing

    def close(self, exit_code: int = 0) -> None:
        """Stop tracing, close the bar, finish W&B. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._tracing:
            self._stop_trace()
        if self._bar is not None:
            self._bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
        if self.active:
            try:
                png = plot_run(self.run_dir)
                if png is not None:
                    log.info("metric history in %s, curves in %s", self.metrics_path, png)
            except Exception as e:  # a plot must never fail a finished run
                log.warning("could not draw the curves of %s: %s", self.run_dir, e)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exit_code=0 if exc_type is None else 1)


# ---------------------------------------------------------------------- helpers


def _ensure_console_handler() -> None:
    """Console lines must show even when the entry point configured no logging."""
    if not logging.root.handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)


def _new_run_id() -> str:
    # What wandb generates (its generator is not public API): 8 lowercase alphanumerics.
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _to_host(metrics: Mapping[str, Any]) -> dict[str, float]:
    # One device_get for all of them; a multi-host array is read from a local shard
    # (metrics are replicated scalars).
    local = {
        k: v.addressable_data(0) if isinstance(v, jax.Array) and not v.is_fully_addressable
        else v
        for k, v in metrics.items()
    }
    out = {}
    for k, v in jax.device_get(local).items():
        a = np.asarray(v)
        if a.size != 1:
            raise ValueError(f"metric {k!r} must be a scalar, got shape {a.shape}")
        out[k] = float(a.reshape(()))
    return out


def _maybe_host(v: Any) -> Any:
    if isinstance(v, jax.Array | np.ndarray | np.generic) and np.size(v) == 1:
        return float(np.asarray(jax.device_get(v)).reshape(()))
    return v


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
