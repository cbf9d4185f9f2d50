"""Settings shared by the test suite and the commands it runs (no jax import here).

``tests/conftest.py`` applies them to the test process before jax is imported; tests
that run a command in a subprocess (``python -m tokenizer.alpha.train``) hand it the
same XLA flags on one device, as a user has it.
"""

from pathlib import Path

# The repository root: the working directory and PYTHONPATH of the commands tests run.
ROOT = Path(__file__).resolve().parent.parent

# The tests are bound by XLA compile time, not run time: LLVM's optimisation passes cost
# a third of it and change no result (XLA's CPU backend does not use fast-math), so the
# suite compiles at -O0. An XLA_FLAGS that sets either option already wins.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"

# Simulated CPU devices of the test process, for the sharding tests.
TEST_DEVICE_COUNT = 8
