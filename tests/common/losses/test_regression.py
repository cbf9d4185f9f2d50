"""L1 / L2 and the masked mean against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.losses import l1_loss, l2_loss, masked_mean
from tests.helpers import assert_close

LOSSES = {"l1": (l1_loss, lambda d: np.abs(d)), "l2": (l2_loss, lambda d: d * d)}


def _masked_ref(values: np.ndarray, mask: np.ndarray) -> float:
    mask = np.broadcast_to(mask, values.shape)
    return values[mask].sum() / max(mask.sum(), 1)


@pytest.mark.parametrize("name", LOSSES)
def test_matches_reference_unmasked_and_masked(name, rng):
    fn, elem = LOSSES[name]
    pred, target = rng.normal(size=(3, 7, 2)), rng.normal(size=(3, 7, 2))
    loss, metrics = fn(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32))
    assert_close(loss, elem(pred - target).mean())
    assert set(metrics) == {name} and metrics[name] is loss
    # [B, T] valid mask against [B, T, C] values (mask[..., None] broadcasts).
    mask = np.arange(7)[None, :] < np.array([7, 3, 1])[:, None]
    loss, _ = fn(pred.astype(np.float32), target.astype(np.float32), mask[..., None])
    assert_close(loss, _masked_ref(elem(pred - target), mask[..., None]))


@pytest.mark.parametrize("name", LOSSES)
def test_padding_contents_do_not_matter(name, rng):
    fn, _ = LOSSES[name]
    pred, target = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    base, _ = fn(pred, target, mask)
    pred2 = np.where(mask, pred, np.nan)
    target2 = np.where(mask, target, 1e30)
    other, _ = fn(pred2, target2, mask)
    assert np.isfinite(other)
    assert_close(other, base, 1e-6)
    grad = jax.grad(lambda p: fn(p, target2, mask)[0])(jnp.asarray(pred2, jnp.float32))
    assert np.isfinite(grad).all() and not grad[~mask].any()
    # A float 0/1 mask means the same as the bool one.
    assert_close(fn(pred, target, mask.astype(np.float32))[0], base, 1e-6)


def test_all_masked_is_zero_and_masked_mean_counts_valid_only():
    x = jnp.arange(6.0).reshape(2, 3)
    assert float(l1_loss(x, 0 * x, jnp.zeros((2, 3), bool))[0]) == 0.0
    assert_close(masked_mean(x, jnp.array([True, False])[:, None]), 1.0)
    assert_close(masked_mean(x), 2.5)


@pytest.mark.parametrize("name", LOSSES)
def test_jit_grad_bf16(name, rng):
    fn, elem = LOSSES[name]
    pred = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(4, 8)) > 0.3)
    eager = fn(pred, target, mask)[0]
    assert_close(jax.jit(fn)(pred, target, mask)[0], eager, 1e-6)
    # pred == target: |x| is not differentiable at 0; the gradient must still be finite.
    grad = jax.grad(lambda p: fn(p, pred, mask)[0])(pred)
    assert np.isfinite(grad).all() and not np.asarray(grad).any()
    pb, tb = pred.astype(jnp.bfloat16), target.astype(jnp.bfloat16)
    loss_b = fn(pb, tb, mask)[0]
    assert loss_b.dtype == jnp.float32
    ref = _masked_ref(elem(np.asarray(pb, np.float64) - np.asarray(tb, np.float64)),
                      np.asarray(mask))
    assert_close(loss_b, ref)
