"""Grokfast EMA / MA filters against float64 numpy ports of ironjr/grokfast."""

from __future__ import annotations

from collections import deque

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.train.grokfast import grokfast_ema, grokfast_ma
from tests.helpers import assert_close


def _grad_seq(rng, n):
    return [
        {
            "w": rng.standard_normal((3, 4)),
            "b": rng.standard_normal((4,)),
            "s": rng.standard_normal(()),
        }
        for _ in range(n)
    ]


def _ref_ema(grads, alpha, lamb):
    """``gradfilter_ema``: the EMA starts as the first gradient."""
    ema, out = None, []
    for g in grads:
        if ema is None:
            ema = {k: v.copy() for k, v in g.items()}
        ema = {k: ema[k] * alpha + g[k] * (1 - alpha) for k in g}
        out.append({k: g[k] + ema[k] * lamb for k in g})
    return out


def _ref_ma(grads, window, lamb):
    """``gradfilter_ma`` with warmup=True, filter_type="mean"."""
    bufs = {k: deque(maxlen=window) for k in grads[0]}
    out = []
    for g in grads:
        new = {}
        for k in g:
            bufs[k].append(g[k])
            if len(bufs[k]) == window:
                new[k] = g[k] + sum(bufs[k]) / len(bufs[k]) * lamb
            else:
                new[k] = g[k]
        out.append(new)
    return out


def _run(tx, grads):
    chex.clear_trace_counter()  # the counter is per code location, shared by tests
    params = jax.tree.map(lambda x: jnp.zeros(np.shape(x), jnp.float32), grads[0])
    state = tx.init(params)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(g, state):
        return tx.update(g, state, params)

    out = []
    for g in grads:
        u, state = step(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g), state)
        out.append(u)
    return out


def test_ema_matches_reference(rng):
    grads = _grad_seq(rng, 8)
    ref = _ref_ema(grads, alpha=0.9, lamb=2.0)
    got = _run(grokfast_ema(alpha=0.9, lamb=2.0), grads)
    # First step: ema = g, so g' = (1 + lamb) g.
    assert_close(got[0]["w"], 3.0 * grads[0]["w"])
    for r, o in zip(ref, got, strict=True):
        for k in r:
            assert_close(o[k], r[k])


@pytest.mark.parametrize("window", [1, 3])
def test_ma_matches_reference(rng, window):
    grads = _grad_seq(rng, 9)
    ref = _ref_ma(grads, window=window, lamb=5.0)
    got = _run(grokfast_ma(window=window, lamb=5.0), grads)
    for i, (r, o) in enumerate(zip(ref, got, strict=True)):
        for k in r:
            if i < window - 1:  # buffer not full yet: gradient unchanged
                np.testing.assert_array_equal(np.asarray(o[k]), np.float32(grads[i][k]))
            assert_close(o[k], r[k])


def test_state_is_pytree_and_bad_args():
    params = {"w": jnp.zeros((2, 3))}
    state = grokfast_ma(window=4).init(params)
    assert state.buffer["w"].shape == (4, 2, 3)
    assert jax.tree.structure(state) == jax.tree.structure(jax.tree.map(lambda x: x, state))
    with pytest.raises(ValueError, match="window"):
        grokfast_ma(window=0)
    with pytest.raises(ValueError, match="alpha"):
        grokfast_ema(alpha=1.0)
