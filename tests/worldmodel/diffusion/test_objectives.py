"""Flow-matching and v-diffusion objectives against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import assert_close
from worldmodel.diffusion.objectives import (
    OBJECTIVES,
    Diffusion,
    FlowMatching,
    make_objective,
)


def _schedule_ref(name: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_t, sigma_t) in float64, written from the papers' formulas."""
    if name == "flow":
        return 1.0 - t, t
    return np.cos(np.pi / 2 * t), np.sin(np.pi / 2 * t)


def _target_ref(name: str, x0: np.ndarray, eps: np.ndarray, t: np.ndarray) -> np.ndarray:
    if name == "flow":
        return eps - x0
    alpha, sigma = _schedule_ref(name, t)
    return alpha * eps - sigma * x0


def _inputs(rng, shape=(4, 6, 3)):
    """x0, eps [B, T, C] and t [B] with both ends of [0, 1] included."""
    x0 = rng.normal(size=shape).astype(np.float32)
    eps = rng.normal(size=shape).astype(np.float32)
    t = np.concatenate([[0.0, 1.0], rng.uniform(size=shape[0] - 2)]).astype(np.float32)
    return x0, eps, t


@pytest.mark.parametrize("name", ["flow", "diffusion"])
def test_corrupt_and_target_match_reference(name, rng):
    obj = make_objective(name)
    x0, eps, t = _inputs(rng)
    x0_64, eps_64 = x0.astype(np.float64), eps.astype(np.float64)
    t_64 = t.astype(np.float64)[:, None, None]
    alpha, sigma = _schedule_ref(name, t_64)
    x_t = obj.corrupt(x0, eps, t)
    assert x_t.dtype == jnp.float32 and x_t.shape == x0.shape
    assert_close(x_t, alpha * x0_64 + sigma * eps_64, 1e-6)
    target = obj.target(x0, eps, t)
    assert target.dtype == jnp.float32 and target.shape == x0.shape
    assert_close(target, _target_ref(name, x0_64, eps_64, t_64), 1e-6)
    # t = 0 is the data and t = 1 pure noise, exactly (Diffusion's ends included).
    np.testing.assert_array_equal(np.asarray(x_t[0]), x0[0])
    np.testing.assert_array_equal(np.asarray(x_t[1]), eps[1])


def test_diffusion_schedule_is_exact_at_the_ends_and_variance_preserving():
    alpha, sigma = Diffusion().schedule(jnp.array([0.0, 1.0], jnp.float32))
    np.testing.assert_array_equal(np.asarray(alpha), [1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(sigma), [0.0, 1.0])
    t = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float32)
    alpha, sigma = Diffusion().schedule(t)
    assert_close(alpha**2 + sigma**2, np.ones(101), 1e-6)
    assert_close(alpha, np.cos(np.pi / 2 * np.asarray(t, np.float64)), 1e-6)


@pytest.mark.parametrize("name", ["flow", "diffusion"])
def test_denoised_and_noise_from_invert_corrupt(name, rng):
    """With the true target as prediction, x0 and eps come back at every t, the ends included."""
    obj = make_objective(name)
    x0, eps, t = _inputs(rng)
    x_t = obj.corrupt(x0, eps, t)
    v = obj.target(x0, eps, t)
    assert_close(obj.denoised(x_t, v, t), x0, 1e-6)
    assert_close(obj.noise_from(x_t, v, t), eps, 1e-6)


@pytest.mark.parametrize("name", ["flow", "diffusion"])
def test_loss_matches_reference_unmasked_and_masked(name, rng):
    obj = make_objective(name)
    x0, eps, t = _inputs(rng)
    pred = rng.normal(size=x0.shape).astype(np.float32)
    t_64 = t.astype(np.float64)[:, None, None]
    err = pred - _target_ref(name, x0.astype(np.float64), eps.astype(np.float64), t_64)
    # x0_hat - x0 = -w(t) (pred - v): flow's x0_hat = x_t - t v, diffusion's alpha x_t - sigma v.
    w = t_64 if name == "flow" else np.sin(np.pi / 2 * t_64)
    loss, metrics = obj.loss(pred, x0, eps, t)
    assert set(metrics) == {"loss", "x0_mse"} and metrics["loss"] is loss
    assert loss.dtype == jnp.float32 and loss.shape == ()
    assert_close(loss, np.mean(err**2), 1e-6)
    assert_close(metrics["x0_mse"], np.mean((w * err) ** 2), 1e-5)
    # A [B, T] valid mask against [B, T, C] latents, as padded sequences have it.
    mask = np.arange(6)[None, :] < np.array([6, 4, 2, 0])[:, None]
    loss, metrics = obj.loss(pred, x0, eps, t, mask[..., None])
    full = np.broadcast_to(mask[..., None], err.shape)
    assert_close(loss, np.mean(err[full] ** 2), 1e-6)
    assert_close(metrics["x0_mse"], np.mean((w * err)[full] ** 2), 1e-5)


@pytest.mark.parametrize("name", ["flow", "diffusion"])
def test_loss_ignores_padding_contents_and_its_gradient_is_zero_there(name, rng):
    obj = make_objective(name)
    x0, eps, t = _inputs(rng, (3, 5, 2))
    pred = rng.normal(size=x0.shape).astype(np.float32)
    mask = (np.arange(5)[None, :] < np.array([5, 3, 1])[:, None])[..., None]
    base, _ = obj.loss(pred, x0, eps, t, mask)
    full = np.broadcast_to(mask, x0.shape)
    nan_pred, nan_x0 = np.where(full, pred, np.nan), np.where(full, x0, np.inf)

    @jax.jit
    def loss_and_grad(p):
        return jax.value_and_grad(lambda p: obj.loss(p, nan_x0, eps, t, mask)[0])(p)

    other, grad = loss_and_grad(jnp.asarray(nan_pred, jnp.float32))
    assert other.dtype == jnp.float32
    assert_close(other, base, 1e-6)
    assert np.isfinite(grad).all() and not np.asarray(grad)[~full].any()
    # bf16 predictions (a bf16 network) are accepted and the loss is still float32.
    assert obj.loss(jnp.asarray(pred, jnp.bfloat16), x0, eps, t)[0].dtype == jnp.float32


def test_logit_normal_time_sampling_matches_its_parameters():
    """logit(t) of 65536 draws: mean within 5 standard errors s / sqrt(n) of m, std within
    5 s / sqrt(2 n) of s (a normal sample's std has standard error s / sqrt(2 n)); a fixed
    seed makes it deterministic, and an unlucky seed would fail with probability < 1e-6."""
    n = 65536
    for m, s in [(0.0, 1.0), (0.5, 1.5)]:
        t = np.asarray(FlowMatching(logit_mean=m, logit_std=s).sample_time(jax.random.key(0), n))
        assert t.shape == (n,) and t.dtype == np.float32
        assert ((t > 0) & (t < 1)).all()
        logit = np.log(t.astype(np.float64)) - np.log1p(-t.astype(np.float64))
        assert abs(logit.mean() - m) < 5 * s / np.sqrt(n)
        assert abs(logit.std() - s) < 5 * s / np.sqrt(2 * n)
    # Diffusion: uniform on [0, 1), mean 1/2 within 5 standard errors sqrt(1/12 / n).
    t = np.asarray(Diffusion().sample_time(jax.random.key(1), n))
    assert t.shape == (n,) and t.min() >= 0 and t.max() < 1
    assert abs(t.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)


def test_make_objective_picks_by_name_and_rejects_bad_values():
    assert set(OBJECTIVES) == {"flow", "diffusion"}
    assert make_objective("flow", logit_mean=0.3) == FlowMatching(logit_mean=0.3, logit_std=1.0)
    assert make_objective("diffusion") == Diffusion()
    hash(FlowMatching())  # frozen: usable as a static jit argument
    with pytest.raises(ValueError, match="valid: diffusion, flow"):
        make_objective("rectified")
    with pytest.raises(ValueError, match="logit_std"):
        FlowMatching(logit_std=-1.0)
