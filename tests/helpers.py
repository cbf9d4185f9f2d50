"""Assertions shared by the test suite."""

from __future__ import annotations

import numpy as np
from flax import nnx

from common.nn import axes as ax


def assert_close(actual, ref, rtol: float = 1e-5, *, where=None) -> None:
    """``|actual - ref| <= rtol * (|ref| + max|ref|)`` elementwise, shapes equal.

    The absolute part is relative to the signal's scale, so near-zero entries of a
    large signal are held to the same precision as the rest ("rtol relative").
    ``where`` selects the entries to compare (e.g. the valid tokens of a padded batch).
    """
    actual, ref = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    assert actual.shape == ref.shape, (actual.shape, ref.shape)
    if where is not None:
        actual, ref = actual[where], ref[where]
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))


def assert_params_have_axes(model: nnx.Module) -> None:
    """Every ``nnx.Param`` of ``model`` carries one known logical axis name per dim."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert len(flat) > 0
    for path, var in flat:
        names = ax.logical_axes(var)
        assert names is not None, path
        assert len(names) == var[...].ndim, (path, names)
        assert all(n is None or n in ax.ALL_AXES for n in names), (path, names)
