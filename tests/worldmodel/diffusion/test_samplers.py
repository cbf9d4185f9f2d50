"""Samplers on a closed-form case, classifier-free guidance and the sampler dispatch.

Closed form: data x0 ~ N(mu, diag(s^2)) and eps ~ N(0, I) make (x_t, v) jointly Gaussian
for both objectives, so the exact minimiser of the MSE, E[v | x_t], is the linear regression

    E[v | x_t] = E[v] + Cov(v, x_t) / Var(x_t) * (x_t - E[x_t])       (per dimension).

Flow matching, x_t = (1 - t) x0 + t eps, v = eps - x0:
    E[x_t] = (1 - t) mu,  Var(x_t) = V_t = (1 - t)^2 s^2 + t^2,
    E[v] = -mu,           Cov(v, x_t) = t - (1 - t) s^2 = V_t' / 2,
so E[v | x_t] = -mu + (t - (1 - t) s^2) / V_t * (x_t - (1 - t) mu). Along the ODE
dx/dt = E[v | x_t], x_t = (1 - t) mu + sqrt(V_t) z with z constant (differentiate: it is the
equation above), so the exact sampler maps x1 (V_1 = 1) to x0 = mu + s * x1.

v-diffusion, x_t = a x0 + o eps, v = a eps - o x0 (a = cos(pi/2 t), o = sin(pi/2 t)):
    E[x_t] = a mu,  Var(x_t) = V_t = a^2 s^2 + o^2,  E[v] = -o mu,  Cov(v, x_t) = a o (1 - s^2),
so E[v | x_t] = -o mu + a o (1 - s^2) / V_t * (x_t - a mu), and the probability-flow ODE again
maps x1 to mu + s * x1 (the only increasing map between two 1-D Gaussians).

Each sampler with these linear predictors is an affine map of x1, exact in the mean (the
mean trajectory has zero error: E[v | E[x_t]] = E[v] is its exact velocity) and off by a
gain error that its order sets. Statistics use n = 4096 samples: a mean is within 5 standard
errors s / sqrt(n) and a std within 5 s / sqrt(2 n) of its value but with probability
< 1e-6; the step counts keep the discretisation's gain error below one standard error.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import assert_close
from worldmodel.diffusion.objectives import Diffusion, FlowMatching, make_objective
from worldmodel.diffusion.samplers import SAMPLERS, ddim, euler, guided, heun, sample

MU = np.array([1.5, -0.5, 0.0], np.float32)
S = np.array([0.5, 2.0, 1.0], np.float32)
N_SAMPLES = 4096


def flow_v(x, t, mu=MU, s=S):
    """Exact E[v | x_t] of flow matching for x0 ~ N(mu, s^2): x [B, D], t [B]."""
    t = t[:, None]
    var = (1 - t) ** 2 * s**2 + t**2
    return -mu + (t - (1 - t) * s**2) / var * (x - (1 - t) * mu)


def diffusion_v(x, t, mu=MU, s=S):
    """Exact E[v | x_t] of cosine v-diffusion for x0 ~ N(mu, s^2): x [B, D], t [B]."""
    t = t[:, None]
    a, o = jnp.cos(jnp.pi / 2 * t), jnp.sin(jnp.pi / 2 * t)
    var = a**2 * s**2 + o**2
    return -o * mu + a * o * (1 - s**2) / var * (x - a * mu)


def _noise(seed=0, n=N_SAMPLES):
    return jax.random.normal(jax.random.key(seed), (n, len(MU)), jnp.float32)


def _assert_gaussian(x, mu, std, n=N_SAMPLES):
    """Sample mean / std of x [n, D] within 5 standard errors of (mu, std) per dimension."""
    x = np.asarray(x, np.float64)
    assert (np.abs(x.mean(0) - mu) < 5 * std / np.sqrt(n)).all(), (x.mean(0), mu)
    assert (np.abs(x.std(0) - std) < 5 * std / np.sqrt(2 * n)).all(), (x.std(0), std)


def _ddim_reference(x1, steps: int, eta: float, z=None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 DDIM chain on the closed form: (x0 [n, D] from x1 [n, D] and the per-step
    noise z [steps, n, D], the variance of x0 over x1 and z [D]).

    Writing x_t = a_t mu + u_t, the exact predictor gives x0_hat = mu + a_t s^2 / V_t u_t and
    eps_hat = o_t / V_t u_t, so a DDIM step is u_s = k u_t + c z with
    k = (a_s a_t s^2 + r o_t) / V_t, r = sqrt(o_s^2 - c^2) (Song et al. 2021, eq. 12).
    """
    s = S.astype(np.float64)
    u, var = np.asarray(x1, np.float64), np.ones_like(s)
    for i in range(steps):
        t, t_next = 1 - i / steps, 1 - (i + 1) / steps
        a_t, o_t = np.cos(np.pi / 2 * t), np.sin(np.pi / 2 * t)
        a_s, o_s = np.cos(np.pi / 2 * t_next), np.sin(np.pi / 2 * t_next)
        c2 = eta**2 * (o_s / o_t) ** 2 * (1 - (a_t / a_s) ** 2)
        k = (a_s * a_t * s**2 + np.sqrt(o_s**2 - c2) * o_t) / (a_t**2 * s**2 + o_t**2)
        u = k * u + (0.0 if z is None else np.sqrt(c2) * np.asarray(z[i], np.float64))
        var = k**2 * var + c2
    return MU + u, var


@pytest.mark.parametrize("name, steps", [("euler", 256), ("heun", 32)])
def test_flow_samplers_recover_a_gaussian(name, steps):
    """Euler's gain error at 256 steps is 0.6% of s, Heun's at 32 steps 0.16%: both under the
    1.1% standard error of a std over 4096 samples."""
    x1 = _noise()
    x0 = jax.jit(lambda x: sample(FlowMatching(), lambda x, t, c: flow_v(x, t), x, steps, name))(x1)
    assert x0.shape == x1.shape and x0.dtype == jnp.float32
    _assert_gaussian(x0, MU, S)


def test_heun_is_second_order_and_euler_first_order():
    """Error at t = 0 against the exact transport mu + s x1 (max over 64 samples, which the
    affine error makes independent of the samples but for a common factor): halving the step
    halves Euler's error and quarters Heun's (ratios measured 1.98 and 4.14 at 32 -> 64 steps;
    the bounds leave room for the next-order term). Heun with 16 steps (31 evaluations) beats
    Euler with 128 (measured 0.021 vs 0.091)."""
    x1 = _noise(n=64)
    exact = MU + S * np.asarray(x1, np.float64)
    model = lambda x, t, c: flow_v(x, t)

    @jax.jit
    def run(x):
        obj = FlowMatching()
        return ([euler(model, obj, x, n) for n in (32, 64, 128)],
                [heun(model, obj, x, n) for n in (16, 32, 64)])

    eulers, heuns = run(x1)
    err = lambda x: np.abs(np.asarray(x, np.float64) - exact).max()
    e_euler, e_heun = [err(x) for x in eulers], [err(x) for x in heuns]
    for coarse, fine in itertools.pairwise(e_euler):
        assert 1.9 < coarse / fine < 2.1, e_euler
    for coarse, fine in itertools.pairwise(e_heun):
        assert 3.8 < coarse / fine < 4.6, e_heun
    assert e_heun[0] < e_euler[-1] / 3, (e_heun, e_euler)


def test_ddim_deterministic_recovers_a_gaussian():
    """eta = 0: the map x1 -> x0 equals the float64 chain mu + gain * x1 (to float32 rounding
    over 256 steps); the gain undershoots s by O(1/steps) (0.60% here; for s = 1 it is
    prod cos(pi / (2 steps)) ~ 1 - pi^2 / (8 steps)), under the 1.1% standard error of a std
    over 4096 samples, and the samples' statistics match N(mu, s^2) within 5 of those."""
    x1 = _noise()
    model = lambda x, t, c: diffusion_v(x, t)
    run = jax.jit(lambda x, key: ddim(model, Diffusion(), x, 256, key=key))
    x0 = run(x1, jax.random.key(3))
    x0_ref, var = _ddim_reference(x1, 256, 0.0)
    assert_close(x0, x0_ref, 1e-5)
    assert np.abs(np.sqrt(var) / S - 1).max() < 1 / np.sqrt(2 * N_SAMPLES)
    _assert_gaussian(x0, MU, S)
    # Deterministic: the key is not used.
    np.testing.assert_array_equal(np.asarray(run(x1, jax.random.key(4))), np.asarray(x0))


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_stochastic_matches_its_reference_and_needs_a_key(eta):
    """eta > 0 (1: DDPM's posterior noise): with the sampler's own draws (step i uses
    fold_in(key, i)) the samples equal the float64 chain; their mean is mu exactly and their
    variance the chain's (under s^2 by O(1/steps): a step drops Var(x0 | x_t)), within 5
    standard errors; the same key gives the same samples, another key others."""
    x1, key, steps = _noise(), jax.random.key(1), 64
    model = lambda x, t, c: diffusion_v(x, t)

    @jax.jit
    def run(x, key):
        z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), x.shape))
        return ddim(model, Diffusion(), x, steps, eta=eta, key=key), z(jnp.arange(steps))

    x0, z = run(x1, key)
    x0_ref, var = _ddim_reference(x1, steps, eta, z)
    assert_close(x0, x0_ref, 1e-5)
    _assert_gaussian(x0, MU, np.sqrt(var))
    np.testing.assert_array_equal(np.asarray(run(x1, key)[0]), np.asarray(x0))
    assert np.abs(np.asarray(run(x1, jax.random.key(2))[0] - x0)).min() > 0
    with pytest.raises(ValueError, match="pass key"):
        ddim(model, Diffusion(), x1, 4, eta=eta)


# A class-conditioned closed-form "denoiser": class k has data N(MUS[k], SS[k]^2); the last
# row, N(0, 1), is what it predicts unconditioned (cond=None or the null class id 2).
MUS = np.array([[1.5, -0.5, 0.25], [-1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
SS = np.array([[0.5, 2.0, 1.0], [1.5, 0.3, 0.8], [1.0, 1.0, 1.0]], np.float32)
NULL = 2
CALLS = []


def _class_model(v_fn):
    def model_fn(x, t, cond):
        CALLS.append((x.shape[0], cond is None))  # at trace time: one entry per traced call
        cond = jnp.full((x.shape[0],), NULL) if cond is None else cond
        return v_fn(x, t, jnp.asarray(MUS)[cond], jnp.asarray(SS)[cond])
    return model_fn


@pytest.mark.parametrize("name, null_cond", [("flow", None), ("flow", NULL),
                                             ("diffusion", None), ("diffusion", NULL)])
def test_cfg_scale_one_is_conditional_and_scale_zero_unconditional(name, null_cond):
    """Same noise (and for DDIM with eta = 1, same key): bit-identical samples."""
    obj = make_objective(name)
    model_fn = _class_model(flow_v if name == "flow" else diffusion_v)
    kw = {} if name == "flow" else {"eta": 1.0, "key": jax.random.key(7)}
    x1 = _noise(n=16)
    cond = jnp.arange(16) % 2
    null = None if null_cond is None else jnp.full((16,), NULL)

    @jax.jit
    def run(x1, cond):
        draw = functools.partial(sample, obj, x1=x1, steps=8, **kw)
        return (draw(model_fn=guided(model_fn, 1.0, null_cond), cond=cond),
                draw(model_fn=model_fn, cond=cond),
                draw(model_fn=guided(model_fn, 0.0, null_cond), cond=cond),
                draw(model_fn=model_fn, cond=null),
                draw(model_fn=guided(model_fn, 3.0, null_cond), cond=cond))

    CALLS.clear()
    g1, conditional, g0, unconditional, g3 = (np.asarray(x) for x in run(x1, cond))
    np.testing.assert_array_equal(g1, conditional)
    np.testing.assert_array_equal(g0, unconditional)
    assert np.abs(conditional - unconditional).min() > 0  # the condition matters
    assert np.abs(g3 - conditional).min() > 0
    # The guided model evaluates cond and uncond as one batch of 2B when it has a null id.
    guided_calls = CALLS[:2] if null_cond is None else CALLS[:1]
    assert guided_calls == ([(16, True), (16, False)] if null_cond is None else [(32, False)])


def test_sample_dispatch_defaults_and_rejects_wrong_combinations():
    model = lambda x, t, c: flow_v(x, t)
    x1 = _noise(n=8)

    @jax.jit
    def run(x):
        return (sample(FlowMatching(), model, x, 4), euler(model, FlowMatching(), x, 4),
                sample(Diffusion(), model, x, 4), ddim(model, Diffusion(), x, 4))

    default_flow, euler_x0, default_diffusion, ddim_x0 = run(x1)
    np.testing.assert_array_equal(np.asarray(default_flow), np.asarray(euler_x0))
    np.testing.assert_array_equal(np.asarray(default_diffusion), np.asarray(ddim_x0))
    assert {k.__name__: list(v) for k, v in SAMPLERS.items()} == {
        "FlowMatching": ["euler", "heun"], "Diffusion": ["ddim"]}
    with pytest.raises(ValueError, match="'heun' does not apply to Diffusion; valid: ddim"):
        sample(Diffusion(), model, x1, 4, "heun")
    with pytest.raises(ValueError, match="'ddim' does not apply to FlowMatching; valid: euler, h"):
        sample(FlowMatching(), model, x1, 4, "ddim")
    with pytest.raises(ValueError, match="valid: euler, heun"):
        sample(FlowMatching(), model, x1, 4, "dpm")
    with pytest.raises(ValueError, match=r"needs a Diffusion objective.*valid samplers for it: eu"):
        ddim(model, FlowMatching(), x1, 4)
    with pytest.raises(ValueError, match="needs a FlowMatching objective"):
        heun(model, Diffusion(), x1, 4)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        euler(model, FlowMatching(), x1, 0)


def test_traced_step_count_compiles_once_and_matches_a_static_one():
    model = lambda x, t, c: flow_v(x, t)
    x1 = _noise(n=8)

    @jax.jit
    def run(x, steps):
        return heun(model, FlowMatching(), x, steps), heun(model, FlowMatching(), x, 5)

    for steps in (5, 9):
        traced, static = run(x1, steps)
        if steps == 5:  # equal to rounding: XLA folds the static grid's constants its own way
            assert_close(traced, static, 1e-6)
    assert not np.array_equal(np.asarray(traced), np.asarray(static))
    assert run._cache_size() == 1
