"""Assertions shared by the test suite."""

from __future__ import annotations

import numpy as np
import pytest
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


def fast_cover(cases, columns=None, strength: int = 2) -> list:
    """``cases`` as ``pytest.param``s, all but a pairwise-covering slice marked ``slow``.

    The kept slice holds every pair of values of any two of ``columns`` (indices into a
    case; all of them by default) that the grid holds, picked greedily in grid order, so
    the fast subset still meets every value and every two-way interaction; CI runs all.
    ``strength=1`` keeps only enough cases for every value of every column to appear.
    """
    cases = [tuple(c) for c in cases]
    cols = list(range(len(cases[0])) if columns is None else columns)

    def pairs(c):
        if strength == 1:
            return {(i, c[i]) for i in cols}
        return {(i, c[i], j, c[j]) for a, i in enumerate(cols) for j in cols[a + 1:]}

    uncovered = set().union(*(pairs(c) for c in cases))
    keep = {0}
    uncovered -= pairs(cases[0])
    while uncovered:
        best = max(range(len(cases)), key=lambda n: (len(pairs(cases[n]) & uncovered), -n))
        keep.add(best)
        uncovered -= pairs(cases[best])
    return [pytest.param(*c) if n in keep else pytest.param(*c, marks=pytest.mark.slow)
            for n, c in enumerate(cases)]
