"""ScaledAdam and Eden against float64 numpy references of icefall's published code.

The reference below is written from icefall ``zipformer/optim.py`` (``ScaledAdam.step``,
``_get_clipping_scale``, ``_step_one_batch``, ``_size_update``, ``_step``,
``_step_scalar``; ``Eden.get_lr``) in the source's own stateful, Python-branching form,
independently of the jit-able port in ``common.train.scaled_adam``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.train.scaled_adam import eden_schedule, scaled_adam
from tests.helpers import assert_close


class RefScaledAdam:
    """float64 numpy ScaledAdam, one parameter group, parameters updated in place."""

    def __init__(
        self,
        params,
        lr,
        clipping_scale=None,
        betas=(0.9, 0.98),
        scalar_lr_scale=0.1,
        eps=1e-8,
        param_min_rms=1e-5,
        param_max_rms=3.0,
        scalar_max=10.0,
        size_update_period=4,
        clipping_update_period=100,
    ):
        self.params = {k: np.array(v, np.float64) for k, v in params.items()}
        self.g = dict(
            lr=lr,
            clipping_scale=clipping_scale,
            betas=betas,
            scalar_lr_scale=scalar_lr_scale,
            eps=eps,
            param_min_rms=param_min_rms,
            param_max_rms=param_max_rms,
            scalar_max=scalar_max,
            size_update_period=size_update_period,
            clipping_update_period=clipping_update_period,
        )
        self.state = {k: {} for k in self.params}
        self.global_state = {}
        self.last_clip = 1.0
        self.size_updates = 0

    def step(self, grads):
        grads = {k: np.array(v, np.float64) for k, v in grads.items()}
        first = next(iter(self.state.values()))
        clip = 1.0 if len(first) == 0 else self._clipping_scale(grads)
        self.last_clip = clip
        if clip == 0.0:
            grads = {k: np.zeros_like(v) for k, v in grads.items()}
        for k, p in self.params.items():
            if len(self.state[k]) == 0:
                self._init_state(p, self.state[k])
            self._step_one(p, grads[k], self.state[k], clip)

    def _init_state(self, p, state):
        state["step"] = 0
        state["delta"] = np.zeros_like(p)
        if p.size > 1:
            state["param_rms"] = np.sqrt(np.mean(p**2))
            state["scale_exp_avg_sq"] = 0.0
            state["scale_grads"] = np.zeros(self.g["size_update_period"])
        state["exp_avg_sq"] = np.zeros_like(p)

    def _clipping_scale(self, grads):
        g, gs = self.g, self.global_state
        step = next(iter(self.state.values()))["step"]
        if g["clipping_scale"] is None or step == 0:
            return 1.0
        period = g["clipping_update_period"]
        tot_sumsq = 0.0
        for k, p in self.params.items():
            if p.size == 1:
                tot_sumsq += np.sum(grads[k] ** 2) * g["scalar_lr_scale"] ** 2
            else:
                tot_sumsq += np.sum((grads[k] * self.state[k]["param_rms"]) ** 2)
        tot_norm = np.sqrt(tot_sumsq)
        if "model_norms" not in gs:
            gs["model_norms"] = np.zeros(period)
        gs["model_norms"][step % period] = tot_norm
        irregular = [i for i in [10, 20, 40] if i < period]
        if step % period == 0 or step in irregular:
            sorted_norms = np.sort(gs["model_norms"])
            if step in irregular:
                sorted_norms = sorted_norms[-step:]
            num_norms = sorted_norms.size
            quartiles = [sorted_norms[min(num_norms - 1, (num_norms // 4) * n)] for n in range(5)]
            threshold = g["clipping_scale"] * quartiles[2]
            if step in irregular:
                threshold *= 2.0
            gs["model_norm_threshold"] = threshold
        if "model_norm_threshold" not in gs:
            return 1.0
        ans = min(1.0, gs["model_norm_threshold"] / (tot_norm + 1e-20))
        return 0.0 if ans != ans else ans

    def _step_one(self, p, grad, state, clip):
        g = self.g
        beta1 = g["betas"][0]
        sup = g["size_update_period"]
        if clip != 1.0:
            grad = grad * clip
        step = state["step"]
        state["delta"] *= beta1
        if p.size > 1:
            state["scale_grads"][step % sup] = np.sum(p * grad)
            if step % sup == sup - 1:
                state["param_rms"] = np.sqrt(np.mean(p**2))
                if step > 0:
                    self._size_update(p, state)
        if p.size == 1:
            self._step_scalar(p, grad, state)
        else:
            self._step(p, grad, state)
        state["step"] = step + 1

    def _size_update(self, p, state):
        g = self.g
        beta1, beta2 = g["betas"]
        size_lr = g["lr"] * g["scalar_lr_scale"]
        scale_grads = state["scale_grads"]
        beta2_corr = beta2 ** scale_grads.shape[0]
        state["scale_exp_avg_sq"] = state["scale_exp_avg_sq"] * beta2_corr + np.mean(
            scale_grads**2
        ) * (1 - beta2_corr)
        size_step = (state["step"] + 1) // scale_grads.shape[0]
        bias_correction2 = 1 - beta2_corr**size_step
        denom = np.sqrt(state["scale_exp_avg_sq"]) + g["eps"]
        scale_step = -size_lr * bias_correction2**0.5 * np.sum(scale_grads) / denom
        param_rms = state["param_rms"]
        if param_rms < g["param_min_rms"]:
            scale_step = 0.0
        scale_step = min(scale_step, (g["param_max_rms"] - param_rms) / param_rms)
        state["delta"] += p * scale_step * (1 - beta1)
        self.size_updates += 1

    def _step(self, p, grad, state):
        g = self.g
        beta1, beta2 = g["betas"]
        state["exp_avg_sq"] = state["exp_avg_sq"] * beta2 + grad**2 * (1 - beta2)
        exp_avg_sq = state["exp_avg_sq"]
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        if bias_correction2 < 0.99:
            exp_avg_sq = exp_avg_sq * (1.0 / bias_correction2)
        denom = np.sqrt(exp_avg_sq) + g["eps"]
        alpha = -g["lr"] * (1 - beta1) * max(state["param_rms"], g["param_min_rms"])
        state["delta"] += (grad / denom) * alpha
        p += state["delta"]

    def _step_scalar(self, p, grad, state):
        g = self.g
        beta1, beta2 = g["betas"]
        lr = g["lr"] * g["scalar_lr_scale"]
        state["exp_avg_sq"] = state["exp_avg_sq"] * beta2 + grad**2 * (1 - beta2)
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        denom = np.sqrt(state["exp_avg_sq"] / bias_correction2) + g["eps"]
        state["delta"] += grad / denom * (-lr * (1 - beta1))
        np.clip(p, -g["scalar_max"], g["scalar_max"], out=p)
        p += state["delta"]


def _params(rng):
    return {
        "w": rng.standard_normal((5, 4)) * 0.5,
        "b": rng.standard_normal((4,)) * 0.1,
        "s": np.array(1.5),
    }


def _grads(rng, params, i, spikes):
    """Gradients that vary in size, with spikes that the median rule should clip."""
    scale = 30.0 if i in spikes else 1.0 + 0.3 * np.sin(i)
    return {k: scale * rng.standard_normal(np.shape(v)) for k, v in params.items()}


def _jit_step(tx):
    chex.clear_trace_counter()  # the counter is per code location, shared by tests

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    return step


@pytest.mark.parametrize(
    "n_steps, kwargs, spikes",
    [
        # Default periods: first thresholds on the early steps 10, 20, 40 (doubled).
        (44, dict(clipping_scale=2.0), {13, 22, 30, 41}),
        # Short periods: the size refresh every 2 steps, the threshold every 5.
        (16, dict(clipping_scale=1.0, size_update_period=2, clipping_update_period=5), {7, 11}),
        # No clipping, size refresh every step (size update from step 1), and a small
        # beta2 so that bias correction of the second moment stops (bc2 >= 0.99) at step 6.
        (12, dict(clipping_scale=None, size_update_period=1, betas=(0.8, 0.5)), set()),
    ],
)
def test_matches_reference(rng, n_steps, kwargs, spikes):
    p0 = _params(rng)
    lr = 0.05
    ref = RefScaledAdam(p0, lr=lr, **kwargs)
    tx = scaled_adam(lr, **kwargs)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), p0)
    state = tx.init(params)
    step = _jit_step(tx)
    clipped = 0
    max_err = {"param": 0.0, "update": 0.0}
    got_updates = {k: [] for k in p0}
    ref_updates = {k: [] for k in p0}
    for i in range(n_steps):
        g = _grads(rng, p0, i, spikes)
        before = {k: v.copy() for k, v in ref.params.items()}
        ref.step(g)
        params, state, updates = step(
            jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g), state, params
        )
        assert_close(state.clip_factor, ref.last_clip)
        clipped += ref.last_clip < 1.0
        for k in p0:
            assert_close(params[k], ref.params[k])
            err = np.max(np.abs(np.asarray(params[k], np.float64) - ref.params[k]))
            max_err["param"] = max(max_err["param"], float(err / np.max(np.abs(ref.params[k]))))
            got_updates[k].append(np.asarray(updates[k], np.float64))
            ref_updates[k].append(ref.params[k] - before[k])
    # Updates per parameter over the whole run: the signal's scale is that of the run, as
    # momentum can cancel to a tiny step (e.g. 1e-6 from terms of 5e-4) on some steps.
    for k in p0:
        got, want = np.stack(got_updates[k]), np.stack(ref_updates[k])
        assert_close(got, want)
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        max_err["update"] = max(max_err["update"], float(err))
    assert int(state.count) == n_steps
    assert ref.size_updates > 0  # the learned-scale path ran
    if kwargs["clipping_scale"] is not None:
        assert clipped >= 1, "no step was clipped: the test does not cover clipping"
    print(f"max relative error {max_err}")


def test_update_scales_with_param_rms(rng):
    w = rng.standard_normal((6, 5)).astype(np.float32)
    g = rng.standard_normal((6, 5)).astype(np.float32)
    tx = scaled_adam(0.01)
    params = {"a": jnp.asarray(w), "b": jnp.asarray(10.0 * w)}
    grads = {"a": jnp.asarray(g), "b": jnp.asarray(g)}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert_close(updates["b"], 10.0 * np.asarray(updates["a"], np.float64))
    # First step: -lr * (1 - beta1) * rms(p) * g / |g|.
    rms = np.sqrt(np.mean(np.float64(w) ** 2))
    assert_close(updates["a"], -0.01 * 0.1 * rms * np.sign(g))


def test_scalar_uses_scaled_lr():
    tx = scaled_adam(0.02, scalar_lr_scale=0.1)
    params = {"s": jnp.asarray(0.7), "t": jnp.asarray([-2.0])}
    grads = {"s": jnp.asarray(0.3), "t": jnp.asarray([-5.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is sign(g); with lr * scalar_lr_scale * (1 - beta1).
    assert_close(updates["s"], -0.02 * 0.1 * 0.1)
    assert_close(updates["t"], [0.02 * 0.1 * 0.1])


def test_scalar_clamped_to_scalar_max():
    tx = scaled_adam(0.02, scalar_max=2.0)
    params = {"s": jnp.asarray(5.0)}
    updates, _ = tx.update({"s": jnp.asarray(1.0)}, tx.init(params), params)
    assert_close(optax.apply_updates(params, updates)["s"], 2.0 - 0.02 * 0.1 * 0.1)


def test_state_is_pytree_and_jit_once():
    tx = scaled_adam(0.03, clipping_scale=2.0)
    params = {"w": jnp.ones((3, 2)), "s": jnp.ones(())}
    state = tx.init(params)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    step = _jit_step(tx)
    for _ in range(5):
        params, state, _ = step(jax.tree.map(jnp.ones_like, params), state, params)
    assert int(state.count) == 5
    with pytest.raises(ValueError, match="params"):
        tx.update(params, state)


def test_least_squares_loss_decreases(rng):
    a = jnp.asarray(rng.standard_normal((64, 8)), jnp.float32)
    w_true = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    y = a @ w_true
    params = {
        "w": jnp.asarray(0.1 * rng.standard_normal((8, 3)), jnp.float32),
        "b": jnp.full((3,), 0.1, jnp.float32),
        "gain": jnp.ones(()),
    }

    def loss(p):
        return jnp.mean((p["gain"] * (a @ p["w"]) + p["b"] - y) ** 2)

    tx = scaled_adam(0.05, clipping_scale=2.0)
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    first = float(loss(params))
    for _ in range(300):
        params, state, _ = step(params, state)
    last = float(loss(params))
    assert np.isfinite(last) and last < 0.05 * first, (first, last)


# ------------------------------------------------------------------------- Eden


def _ref_eden(base_lr, batch, epoch, lr_batches, lr_epochs, warmup_batches, warmup_start):
    """``Eden.get_lr`` in float64."""
    factor = ((batch**2 + lr_batches**2) / lr_batches**2) ** -0.25 * (
        ((epoch**2 + lr_epochs**2) / lr_epochs**2) ** -0.25
    )
    warmup_factor = (
        1.0
        if batch >= warmup_batches
        else warmup_start + (1.0 - warmup_start) * (batch / warmup_batches)
    )
    return base_lr * factor * warmup_factor


@pytest.mark.parametrize("steps_per_epoch", [None, 250, 1000])
def test_eden_matches_formula(steps_per_epoch):
    sched = jax.jit(
        eden_schedule(
            0.045,
            lr_batches=7500,
            lr_epochs=3.5,
            steps_per_epoch=steps_per_epoch,
            warmup_steps=500,
            warmup_start=0.5,
        )
    )
    steps = [0, 1, 100, 499, 500, 501, 2000, 7500, 20000, 123456]
    for step in steps:
        epoch = 0.0 if steps_per_epoch is None else step / steps_per_epoch
        ref = _ref_eden(0.045, float(step), epoch, 7500.0, 3.5, 500.0, 0.5)
        assert_close(sched(step), ref)
    assert_close(sched(0), 0.045 * 0.5)


def test_eden_no_warmup():
    sched = eden_schedule(
        0.03, lr_batches=100, lr_epochs=2, steps_per_epoch=10, warmup_steps=0, warmup_start=0.2
    )
    for step in (0, 5, 50, 500):
        assert_close(sched(step), _ref_eden(0.03, step, step / 10, 100.0, 2.0, 0.0, 0.2))


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_gradient_is_zeroed_once_threshold_exists(bad):
    tx = scaled_adam(0.03, clipping_scale=2.0, clipping_update_period=2)
    params = {"w": jnp.ones((3, 2)), "s": jnp.ones(())}
    state = tx.init(params)
    step = _jit_step(tx)
    for _ in range(3):  # the threshold is set on step 2
        params, state, _ = step(jax.tree.map(jnp.ones_like, params), state, params)
    assert bool(state.has_threshold)
    grads = {"w": jnp.ones((3, 2)).at[0, 0].set(bad), "s": jnp.ones(())}
    new_params, state, updates = step(grads, state, params)
    assert float(state.clip_factor) == 0.0
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    for tree in (state.delta, state.exp_avg_sq, state.param_rms, state.scale_grads):
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))
    # As in the source, the non-finite norm is recorded in the ring (NaN sorts last).
    assert not bool(jnp.all(jnp.isfinite(state.model_norms)))
    params, state, _ = step(jax.tree.map(jnp.ones_like, params), state, new_params)
    assert np.isfinite(float(state.model_norm_threshold))
    assert float(state.clip_factor) > 0.0
