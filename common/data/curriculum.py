"""A curriculum of data iterators: stage after stage, each for a number of steps.

Codec fine-tuning starts on short segments with large batches and moves to longer ones
(e.g. 1 s x 32 -> 2 s x 16 -> 4 s x 8): ``CurriculumIterator`` yields ``steps[0]``
batches from the first stage's iterator, then builds the next stage's, and so on; the
last stage runs for as long as it is asked. Each stage is built only when reached (its
grain workers start then) and closed when left.

State: ``{"stage", "stage_position", "inner": <the stage iterator's state>, "plan"}``,
so a resumed run continues in the same stage at the same batch; a state saved under
another curriculum (stage lengths) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class CurriculumIterator:
    """Batches from ``builders[i]()`` for ``steps[i]`` steps each (the last: forever).

    Args:
      builders: one factory per stage returning a checkpointable iterator
        (``get_state`` / ``set_state``, e.g. ``common.data.pipeline.make_pipeline``).
      steps: batches per stage, one per stage but the last (which has no end).
    """

    def __init__(self, builders: Sequence[Callable[[], Any]], steps: Sequence[int]):
        if not builders:
            raise ValueError("CurriculumIterator needs at least one stage")
        if len(steps) != len(builders) - 1 or any(int(s) < 1 for s in steps):
            raise ValueError(f"CurriculumIterator: {len(builders)} stages need "
                             f"{len(builders) - 1} positive stage lengths, got {list(steps)}")
        self.builders, self.steps = list(builders), [int(s) for s in steps]
        self.fingerprint = json.dumps({"stages": len(builders), "steps": self.steps})
        self.stage, self.stage_position = 0, 0
        self._it = self.builders[0]()

    def __iter__(self):
        return self

    def _enter(self, stage: int) -> None:
        self.close()
        self.stage, self.stage_position = stage, 0
        self._it = self.builders[stage]()

    def __next__(self) -> Any:
        if self.stage < len(self.steps) and self.stage_position >= self.steps[self.stage]:
            self._enter(self.stage + 1)
        batch = next(self._it)
        self.stage_position += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_position": self.stage_position,
                "inner": self._it.get_state(), "plan": self.fingerprint}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "stage" not in state:
            raise ValueError(f"not a curriculum iterator state: {state!r:.200}")
        if state.get("plan") != self.fingerprint:
            raise ValueError(f"curriculum state is for another curriculum ({state.get('plan')}"
                             f", this one is {self.fingerprint}): the stages changed since "
                             "it was saved")
        self._enter(int(state["stage"]))
        self.stage_position = int(state["stage_position"])
        self._it.set_state(state["inner"])

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
