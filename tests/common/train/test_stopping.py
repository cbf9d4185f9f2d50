"""Stopping a run early without a host sync every step: the non-finite streak read one
step late, and the multi-process stop agreement every few seconds of wall time (two
processes simulated with a fake all-gather)."""

import numpy as np
import pytest

from common.train import stopping
from common.train.stopping import NonFiniteWatch, StopAgreement, next_interval


class Counter:
    """A device counter stand-in that records when the host reads it."""

    def __init__(self, value, step, reads):
        self.value, self.step, self.reads = value, step, reads

    def __int__(self):
        self.reads.append(self.step)
        return self.value


def _watch(streaks, limit, monkeypatch):
    """Run a ``NonFiniteWatch`` over per-step streak values; returns (result, host reads)."""
    reads = []
    monkeypatch.setattr(stopping.jnp, "copy", lambda x: x)
    watch = NonFiniteWatch(lambda state: state, limit)
    for step, run in enumerate(streaks, 1):
        out = watch.check(step, Counter(run, step, reads), last=step == len(streaks))
        if out is not None:
            return out, reads
    return None, reads


def test_nonfinite_streak_is_read_one_step_late_and_stops_at_the_limit(monkeypatch):
    # No streak: each step reads only the step before it (finished while this one runs).
    out, reads = _watch([0] * 6, 3, monkeypatch)
    assert out is None and reads == [1, 2, 3, 4, 5, 6]  # the last step: at the end
    # A streak from step 3: steps 3, 4, 5 skipped; the run stops at step 5, exactly.
    out, reads = _watch([0, 0, 1, 2, 3, 4, 5, 6], 3, monkeypatch)
    assert out == (3, 5)
    assert reads == [1, 2, 3, 4, 5]  # step 5 read at once: one step short of the limit
    # A streak that ends before the limit does not stop the run.
    out, _ = _watch([1, 2, 0, 1, 2, 0, 0], 3, monkeypatch)
    assert out is None
    # limit 1: the first bad step is found while the next one runs.
    out, reads = _watch([0, 0, 1, 0], 1, monkeypatch)
    assert out == (1, 3) and reads == [1, 2, 3]
    out, _ = _watch([0, 1], 1, monkeypatch)  # ...or at the end of the run
    assert out == (1, 2)


def test_next_interval_is_a_few_seconds_of_the_slowest_process():
    assert next_interval(np.array([0.01, 0.02]), 5.0, 1000) == 250  # 5 s of 20 ms steps
    assert next_interval(np.array([0.01, 0.02]), 5.0, 8) == 16  # grows at most 2x
    assert next_interval(np.array([30.0]), 5.0, 64) == 1  # compiling, or a slow step
    assert next_interval(np.array([0.0, 0.0]), 5.0, 4) == 8


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_one_process_checks_its_own_flag_every_step(monkeypatch):
    monkeypatch.setattr(stopping, "_process_count", lambda: 1)
    monkeypatch.setattr(stopping, "_allgather", pytest.fail)  # never a collective
    agreement = StopAgreement(5.0)
    assert not agreement.should_stop(1, False)
    assert agreement.should_stop(2, True)


def test_processes_agree_every_few_seconds_and_stop_together(monkeypatch):
    """Two processes (this one and a simulated other, whose steps are slower) agree at
    the same steps, about every 5 s of the slower one's steps, and both stop at the
    first agreement after either was signalled."""
    other = {"flag": 0.0, "per_step": 0.5}
    gathered = []

    def allgather(x):
        both = np.stack([x, [other["flag"], other["per_step"]]])
        gathered.append(both)
        return both

    monkeypatch.setattr(stopping, "_process_count", lambda: 2)
    monkeypatch.setattr(stopping, "_allgather", allgather)
    clock = _Clock()
    agreement = StopAgreement(5.0, start_step=100, clock=clock)
    checks = []
    for step in range(101, 160):
        clock.now += 30.0 if step == 101 else 0.1  # the first step compiles
        if step == 150:
            other["flag"] = 1.0  # the other process got SIGTERM
        if agreement.should_stop(step, False):
            break
        if len(gathered) > len(checks):
            checks.append(step)
    # 1, 2, 4, 8 then 10 steps: 5 s of the other process's 0.5 s steps
    assert checks == [101, 102, 104, 108, 116, 126, 136, 146]
    assert step == 156 and len(gathered) == len(checks) + 1  # stopped at the next one
    # The interval came from the gathered values only: the other process, given the
    # same arrays, computes the same steps.
    interval = 1
    for g in gathered[:-1]:
        interval = next_interval(g[:, 1], 5.0, interval)
    assert interval == 10
    # Forced agreements (log and eval steps, the same on every process) come on top.
    assert agreement.should_stop(157, False, force=True) is True
    with pytest.raises(ValueError, match="> 0 s"):
        StopAgreement(0.0)
