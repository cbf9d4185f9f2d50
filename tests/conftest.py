"""Test-wide environment: set before jax is imported anywhere.

`uv run pytest` alone must behave as CI does, so everything the tests rely on is set
here rather than in .ci/run: 8 simulated CPU devices for the sharding tests, CPU as the
platform (accelerator numerics differ, e.g. TF32 matmuls), W&B off, quiet logs.
"""

import os

from tests.settings import TEST_DEVICE_COUNT, TEST_XLA_FLAGS

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# -O0 compiles (see tests/settings.py); an XLA_FLAGS that sets either option already wins.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    _flags += " " + TEST_XLA_FLAGS
if "xla_force_host_platform_device_count" not in _flags:
    _flags += f" --xla_force_host_platform_device_count={TEST_DEVICE_COUNT}"
os.environ["XLA_FLAGS"] = _flags.strip()
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keep each test process to its share of the cores when pytest-xdist runs several.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Exact float32 matmuls in reference comparisons, whatever the backend's default.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator, fresh per test."""
    return np.random.default_rng(0)


def pytest_collection_modifyitems(items):
    """Grouped tests first (stable otherwise): an ``xdist_group`` shares an expensive
    session fixture (the trained alpha run: minutes) on one worker, and started first it
    overlaps with the rest of the suite instead of running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
