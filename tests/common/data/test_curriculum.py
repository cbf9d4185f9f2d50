"""CurriculumIterator: stage lengths, lazy stage building, exact resumption."""

import typing

import pytest

from common.data.curriculum import CurriculumIterator


class Counter:
    """A checkpointable stand-in for a pipeline: yields (name, position)."""

    built: typing.ClassVar[list[str]] = []

    def __init__(self, name):
        self.name, self.pos, self.closed = name, 0, False
        Counter.built.append(name)

    def __next__(self):
        self.pos += 1
        return self.name, self.pos

    def get_state(self):
        return {"position": self.pos}

    def set_state(self, state):
        self.pos = state["position"]

    def close(self):
        self.closed = True


def make():
    return CurriculumIterator([lambda n=n: Counter(n) for n in "abc"], [2, 3])


def test_stages_run_their_steps_then_the_last_runs_on():
    Counter.built = []
    it = make()
    got = [next(it) for _ in range(8)]
    assert got == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3), ("c", 1), ("c", 2),
                   ("c", 3)]
    assert Counter.built == ["a", "b", "c"]  # each stage built once, when reached


def test_resume_continues_exactly():
    it = make()
    for _ in range(4):
        next(it)
    state = it.get_state()
    rest = [next(it) for _ in range(4)]
    again = make()
    again.set_state(state)
    assert [next(again) for _ in range(4)] == rest


def test_bad_lengths_and_foreign_state_are_refused():
    with pytest.raises(ValueError, match="3 stages need 2"):
        CurriculumIterator([lambda: Counter("a")] * 3, [2])
    other = CurriculumIterator([lambda n=n: Counter(n) for n in "abc"], [2, 4])
    with pytest.raises(ValueError, match="another curriculum"):
        other.set_state(make().get_state())
