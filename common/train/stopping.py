"""When a training run stops before its last step, checked often without stalling it.

Two reasons, both checked between steps by ``common.train.loop.train``:

- A signal (SIGTERM: a preemption notice, ~30 s on a TPU pod; SIGINT: Ctrl-C) sets a
  ``StopFlag``. One process reads its flag for free every step. Several processes must
  stop at the same step (each saves its shards of one checkpoint), so they agree with a
  collective (``StopAgreement``), a host sync. Agreeing every step would stall every
  step; agreeing on log steps only (every 50-100 steps) can outlast the notice. So they
  agree every K steps, K chosen to be about ``seconds`` of wall time: each agreement
  gathers, with the flags, every process's seconds per step since the last one, and all
  processes compute the next K from that same gathered array, so they meet again at the
  same step without any other coordination.
- A streak of non-finite updates (``NonFiniteWatch``): the step skips them and counts
  the streak on the device. Reading the counter of the step just dispatched would wait
  for it; the watch reads the previous step's instead, which is finished (or about to
  be) while the current one runs, and reads the current one only inside a streak that
  is one step short of the limit, so a run stops at the step the streak reaches it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

# The largest growth of the agreement interval from one agreement to the next: a run
# whose steps slow down (an eval, a checkpoint, a noisy neighbour) is caught up with
# within a few agreements, and the first measurements (compilation) cannot overshoot.
MAX_GROWTH = 2


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps, saves and returns."""

    def __init__(self):
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:  # a second Ctrl-C: stop right now
            raise KeyboardInterrupt
        log.warning("received %s: saving a checkpoint and stopping",
                    signal.Signals(signum).name)
        self.set = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _process_count() -> int:
    return jax.process_count()


def _allgather(x: np.ndarray) -> np.ndarray:
    """``[P, ...]``: every process's ``x`` (a collective: every process must call it)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def next_interval(seconds_per_step: np.ndarray, seconds: float, previous: int) -> int:
    """Steps until the next agreement: about ``seconds`` of the slowest process's steps,
    at least 1, at most ``MAX_GROWTH`` times ``previous``. A pure function of gathered
    values, so every process gets the same."""
    slowest = float(np.max(seconds_per_step))
    fit = int(seconds / slowest) if slowest > 0 else MAX_GROWTH * previous
    return max(1, min(fit, MAX_GROWTH * previous))


class StopAgreement:
    """Whether any process was signalled, agreed on every ~``seconds`` of wall time.

    Every process calls ``should_stop(step, local)`` after every step, with the same
    ``force`` (a function of the step and the config: log and eval steps). With one
    process it is ``local``, every step, with no collective. With several, the
    collective runs at the first step, at forced steps, and then ``next_interval`` steps
    after the previous agreement.
    """

    def __init__(self, seconds: float, start_step: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        if seconds <= 0:
            raise ValueError(f"stop agreement interval must be > 0 s, got {seconds}")
        self.seconds, self.clock = seconds, clock
        self.multi = _process_count() > 1
        self.interval = 1
        self.next_step = start_step + 1
        self._last_step, self._last_time = start_step, clock()

    def should_stop(self, step: int, local: bool, *, force: bool = False) -> bool:
        if not self.multi:
            return local
        if step < self.next_step and not force:
            return False
        now = self.clock()
        per_step = (now - self._last_time) / max(1, step - self._last_step)
        gathered = _allgather(np.asarray([float(local), per_step], np.float64))
        self.interval = next_interval(gathered[:, 1], self.seconds, self.interval)
        self.next_step = step + self.interval
        self._last_step, self._last_time = step, now
        return bool(np.any(gathered[:, 0] > 0))


class NonFiniteWatch:
    """The streak of consecutive non-finite (skipped) updates, read without waiting
    for the step just dispatched (see the module doc).

    ``counter(state)`` is the program's ``nonfinite_run`` (an ``int32 []`` device array).
    ``check(step, state)`` after each step returns ``(streak, step)`` once a streak has
    reached ``limit`` (the step it was read at), else None.
    """

    def __init__(self, counter: Callable[[Any], jax.Array], limit: int):
        self.counter, self.limit = counter, limit
        self._pending: tuple[int, jax.Array] | None = None

    def check(self, step: int, state: Any, *, last: bool = False) -> tuple[int, int] | None:
        """``last``: the run ends here; read this step's counter too."""
        # A copy: the state is donated to the next step, and the counter with it.
        current = jnp.copy(self.counter(state))
        previous, self._pending = self._pending, (step, current)
        if previous is not None:
            run = int(previous[1])  # finished, or finishing while this step runs
            if run >= self.limit:
                return run, previous[0]
            if not (last or (run >= 1 and run + 1 >= self.limit)):
                return None
        elif not last:
            return None
        run = int(current)  # inside a streak about to reach the limit: wait for this step
        return (run, step) if run >= self.limit else None
