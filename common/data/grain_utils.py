"""Small helpers around grain: absl flags for worker processes, and process sharding.

grain reads its options from absl flags. Outside ``absl.app.run`` the flags are never
parsed, and grain's multiprocess prefetch then raises ``UnparsedFlagAccessError`` when
it starts workers. ``ensure_absl_flags_parsed`` marks them parsed (keeping the
defaults) once, so callers (scripts, notebooks, tests) need not run under absl.

``PositionIterator``: the checkpointable iterator both the speech and the image pipelines
return. Their grain datasets map batch ``p`` to a fixed plan entry, so the state is the
count of batches delivered plus a fingerprint of what decides the batches.

Process sharding: each host reads its own part of the data. The defaults come from
``jax.process_index()`` / ``jax.process_count()``; jax is imported lazily, only when a
default is needed, so grain worker processes never initialise a jax backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from absl import flags

_flags_lock = threading.Lock()


def ensure_absl_flags_parsed() -> None:
    """Mark absl flags parsed (with their defaults) unless something parsed them already.

    Idempotent and thread-safe; a program that runs under ``absl.app.run`` keeps its
    parsed values.
    """
    with _flags_lock:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()


def worker_init(worker_index: int, worker_count: int) -> None:
    """``worker_init_fn`` for ``mp_prefetch``: a spawned worker starts with fresh flags."""
    del worker_index, worker_count
    ensure_absl_flags_parsed()


def process_shard(process_index: int | None = None,
                  process_count: int | None = None) -> tuple[int, int]:
    """``(index, count)`` of this process among the data-reading processes.

    ``None`` takes the value from jax (the multi-host runtime); explicit values are for
    tests and for runs that shard data differently from devices.
    """
    if process_index is None or process_count is None:
        import jax  # lazily: see the module doc

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, process_count), got "
                         f"process_index={process_index}, process_count={process_count}")
    return int(process_index), int(process_count)


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """This process's share of ``global_batch_size`` (which the count must divide)."""
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"batch_size {global_batch_size} must be a positive multiple of the "
                         f"process count {process_count}")
    return global_batch_size // process_count


class PositionIterator:
    """Batches from ``build(position)`` (a grain iterator starting at that batch), with a
    JSON state ``{"position", <fingerprint_key>: fingerprint, **extra}``.

    ``set_state`` rebuilds the grain iterator at the saved position; a state whose
    fingerprint differs (another source, seed, batch size, ...) is refused instead of
    silently diverging. Subclasses add to the state with ``_extra_state`` /
    ``_restore_extra`` and see every batch in ``_on_batch``.
    """

    fingerprint_key = "fingerprint"
    what = "iterator"  # error messages: "not an <what> state", "for another <fingerprint_of>"
    fingerprint_of = "pipeline"

    def __init__(self, build: Callable[[int], Any], fingerprint: str):
        self._build, self.fingerprint = build, fingerprint
        self._position = 0
        self._it = build(0)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        batch = next(self._it)
        self._position += 1
        return self._on_batch(batch)

    def _on_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        return batch

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, state: Mapping[str, Any]) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        return {"position": self._position, self.fingerprint_key: self.fingerprint,
                **self._extra_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "position" not in state:
            article = "an" if self.what[0] in "aeiou" else "a"
            raise ValueError(f"not {article} {self.what} state: {state!r:.200}")
        saved = state.get(self.fingerprint_key)
        if saved != self.fingerprint:
            raise ValueError(f"{self.what} state is for another {self.fingerprint_of} "
                             f"({saved}, this one is {self.fingerprint}): "
                             f"{self._mismatch_hint}")
        self.close()
        self._position = int(state["position"])
        self._it = self._build(self._position)
        self._restore_extra(state)

    _mismatch_hint = "what decides the batches changed since it was saved"

    def close(self) -> None:
        """Stop worker processes (also done at garbage collection)."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        self._it = iter(())  # drop buffered batches (shared memory) now, not at exit

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
