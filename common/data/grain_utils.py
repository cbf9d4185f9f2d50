"""Small helpers around grain: absl flags for worker processes, and process sharding.

grain reads its options from absl flags. Outside ``absl.app.run`` the flags are never
parsed, and grain's multiprocess prefetch then raises ``UnparsedFlagAccessError`` when
it starts workers. ``ensure_absl_flags_parsed`` marks them parsed (keeping the
defaults) once, so callers (scripts, notebooks, tests) need not run under absl.

Process sharding: each host reads its own part of the data. The defaults come from
``jax.process_index()`` / ``jax.process_count()``; jax is imported lazily, only when a
default is needed, so grain worker processes never initialise a jax backend.
"""

from __future__ import annotations

import threading

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
