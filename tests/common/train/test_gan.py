import dataclasses
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from common.losses.adversarial import feature_matching_loss, lsgan_g_loss
from common.nn.conv import Conv
from common.train.gan import GANConfig, GANState, make_gan_step
from common.train.step import TrainState
from tests.helpers import assert_close


class Gen(nnx.Module):
    def __init__(self, rngs):
        self.a = Conv(1, 4, 3, rngs=rngs)
        self.b = Conv(4, 1, 3, rngs=rngs)

    def __call__(self, x):
        return self.b(jax.nn.tanh(self.a(x)))


class Disc(nnx.Module):
    """Two sub-discriminators: full rate and 2x average-pooled."""

    def __init__(self, rngs):
        self.c1 = nnx.List([Conv(1, 4, 3, rngs=rngs) for _ in range(2)])
        self.c2 = nnx.List([Conv(4, 1, 3, rngs=rngs) for _ in range(2)])

    def __call__(self, x):
        logits, feats = [], []
        for i, (c1, c2) in enumerate(zip(self.c1, self.c2, strict=True)):
            h = x if i == 0 else 0.5 * (x[:, ::2] + x[:, 1::2])
            f = jax.nn.leaky_relu(c1(h), 0.1)
            logits.append(c2(f))
            feats.append([f])
        return logits, feats


def gen_fn(gen, batch, key):
    real = batch["x"]
    fake = gen(real)
    rec = jnp.mean(jnp.abs(fake - real))
    return fake, real, rec, {"l1": rec}


def disc_fn(disc, x, valid):
    del valid  # every sample is valid here (gen_fn returns no mask)
    return disc(x)


def _setup(cfg: GANConfig, lr=1e-2, tx_fn=optax.adam):
    gtx, dtx = tx_fn(lr), tx_fn(lr)
    ggd, gs = TrainState.create(Gen(nnx.Rngs(0)), gtx, jax.random.key(0))
    dgd, ds = TrainState.create(Disc(nnx.Rngs(1)), dtx, jax.random.key(1))
    state = GANState(gen=gs, disc=ds, started=jnp.array(False))
    step = make_gan_step(ggd, dgd, gen_fn, disc_fn, gtx, dtx, cfg)
    return state, step, (ggd, dgd)


def _batch(seed):
    return {"x": np.random.default_rng(seed).standard_normal((4, 32, 1)).astype(np.float32)}


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_disc_waits_for_its_start_step_then_trains():
    chex.clear_trace_counter()
    state, step, _ = _setup(GANConfig(disc_start_step=2))
    jstep = jax.jit(chex.assert_max_traces(step, n=1))
    d0 = jax.device_get(state.disc.params)
    for i in range(2):
        state, m = jstep(state, _batch(i))
        assert float(m["disc/started"]) == 0.0 and float(m["gen/adv_weight"]) == 0.0
    for a, b in zip(jax.tree.leaves(jax.device_get(state.disc.params)), jax.tree.leaves(d0),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    state, m = jstep(state, _batch(2))
    assert float(m["disc/started"]) == 1.0 and float(m["gen/adv_weight"]) == 1.0
    moved = [float(np.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(jax.device_get(state.disc.params)), jax.tree.leaves(d0), strict=True)]
    assert max(moved) > 0
    assert all(np.isfinite(float(v)) for v in m.values())


@pytest.mark.slow
def test_start_on_loss_threshold_latches():
    state, step, _ = _setup(GANConfig(disc_start_loss=1e9))
    state, m = jax.jit(step)(state, _batch(0))
    assert float(m["disc/started"]) == 1.0
    state2, step2, _ = _setup(GANConfig(disc_start_loss=1e-9))
    state2, m2 = jax.jit(step2)(state2, _batch(0))
    assert float(m2["disc/started"]) == 0.0
    # once started it stays on, whatever the loss does
    state2 = dataclasses.replace(state2, started=jnp.array(True))
    _, m3 = jax.jit(step2)(state2, _batch(1))
    assert float(m3["disc/started"]) == 1.0


def _manual_gen_losses(state, gdefs, cfg, batch):
    """Reference: generator losses as a function of its params, noise off."""
    ggd, dgd = gdefs
    disc = nnx.merge(dgd, state.disc.params, state.disc.rest)

    def parts(params):
        gen = nnx.merge(ggd, params, state.gen.rest)
        fake, real, rec, _ = gen_fn(gen, batch, None)
        lf, ff = disc(fake)
        _, fr = disc(real)
        return rec, lsgan_g_loss(lf)[0] + cfg.feature_weight * feature_matching_loss(fr, ff)[0]
    return parts


@pytest.mark.parametrize("last_layer", ["", "b/"])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_adaptive_weight_matches_separate_gradients(last_layer):
    cfg = GANConfig(adaptive_weight=True, last_layer=last_layer, adv_weight=0.5)
    state, step, gdefs = _setup(cfg)
    batch = _batch(0)
    parts = _manual_gen_losses(state, gdefs, cfg, batch)
    g_rec = jax.grad(lambda p: parts(p)[0])(state.gen.params)
    g_adv = jax.grad(lambda p: parts(p)[1])(state.gen.params)
    sel = lambda t: [x for path, x in jax.tree_util.tree_flatten_with_path(t)[0]
                     if last_layer in "/".join(str(getattr(k, "key", k)) for k in path) + "/"]
    norm = lambda t: np.sqrt(sum(float(jnp.sum(x ** 2)) for x in sel(t)))
    expected = 0.5 * norm(g_rec) / (norm(g_adv) + 1e-4)
    _, m = jax.jit(step)(state, batch)
    np.testing.assert_allclose(float(m["gen/adv_weight"]), expected, rtol=1e-5)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_generator_gradient_is_rec_plus_weighted_adversarial():
    cfg = GANConfig(adv_weight=0.3, feature_weight=2.0)
    state, step, gdefs = _setup(cfg, lr=0.1, tx_fn=optax.sgd)
    batch = _batch(0)
    parts = _manual_gen_losses(state, gdefs, cfg, batch)
    grads = jax.grad(lambda p: parts(p)[0] + 0.3 * parts(p)[1])(state.gen.params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.gen.params, grads)
    new, m = jax.jit(step)(state, batch)
    for a, b in zip(jax.tree.leaves(new.gen.params), jax.tree.leaves(expected), strict=True):
        assert_close(a, b, 1e-5)
    rec, gan = parts(state.gen.params)
    np.testing.assert_allclose(float(m["loss"]), float(rec + 0.3 * gan), rtol=1e-5)


def test_r1_and_instance_noise():
    cfg = GANConfig(r1_weight=10.0, instance_noise=0.2, instance_noise_steps=4)
    state, step, _ = _setup(cfg)
    jstep = jax.jit(step)
    stds = []
    for i in range(5):
        state, m = jstep(state, _batch(i))
        stds.append(float(m["instance_noise"]))
        assert float(m["disc/r1"]) > 0
    np.testing.assert_allclose(stds, [0.2, 0.15, 0.1, 0.05, 0.0], atol=1e-7)


@pytest.mark.slow  # two GAN steps compiled per case, as the supervised step's accumulation test
@pytest.mark.parametrize("cfg", [
    GANConfig(adv_weight=0.5, r1_weight=1.0),
    GANConfig(adaptive_weight=True, last_layer="b/", disc_start_loss=1e9),
], ids=["fixed_weight_r1", "adaptive_weight_loss_start"])
def test_gradient_accumulation_equals_full_batch(cfg):
    # The toy losses (L1, LSGAN, feature matching, R1) are means over examples and the
    # toy models hold no batch statistics; instance noise is off (each micro-batch would
    # draw its own), so the mean over 4 micro-batches of 2 is the batch-of-8 step.
    batch = {"x": np.random.default_rng(7).standard_normal((8, 32, 1)).astype(np.float32)}
    state, step, (ggd, dgd) = _setup(cfg)
    full_state, full_m = jax.jit(step)(state, batch)
    acc_step = make_gan_step(ggd, dgd, gen_fn, disc_fn, optax.adam(1e-2), optax.adam(1e-2),
                             cfg, grad_accum=4)
    acc_state, acc_m = jax.jit(acc_step)(_setup(cfg)[0], batch)
    assert float(acc_m["disc/started"]) == 1.0
    for model in ("gen", "disc"):
        acc_p, full_p = (jax.device_get(getattr(s, model).params) for s in (acc_state, full_state))
        for a, b in zip(jax.tree.leaves(acc_p), jax.tree.leaves(full_p), strict=True):
            assert_close(a, b, 1e-5)
    assert set(acc_m) == set(full_m)
    for k in full_m:
        np.testing.assert_allclose(float(acc_m[k]), float(full_m[k]), rtol=1e-5, err_msg=k)


def test_gradient_accumulation_must_divide_the_batch():
    state, _, (ggd, dgd) = _setup(GANConfig())
    step = make_gan_step(ggd, dgd, gen_fn, disc_fn, optax.adam(1e-2), optax.adam(1e-2),
                         grad_accum=3)
    with pytest.raises(ValueError, match=r"train\.grad_accum=3 must divide the batch"):
        jax.jit(step)(state, _batch(0))
    with pytest.raises(ValueError, match=r"train\.grad_accum"):
        make_gan_step(ggd, dgd, gen_fn, disc_fn, optax.adam(1e-2), optax.adam(1e-2),
                      grad_accum=0)


def test_config_validation():
    with pytest.raises(ValueError, match=r"gan\.loss"):
        GANConfig(loss="wasserstein")
    with pytest.raises(ValueError, match=r"gan\.r1_weight"):
        GANConfig(r1_weight=-1.0)


class WaveIterator:
    """Checkpointable stream of random [8, 32, 1] 'waveforms'."""

    def __init__(self):
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.position += 1
        return _batch(1000 + self.position)

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = state["position"]


@pytest.mark.slow  # a few steps of the loop, twice
def test_gan_program_trains_and_resumes_exactly_in_the_loop(tmp_path):
    from common.train.checkpoint import CheckpointConfig, load_model
    from common.train.gan import gan_program
    from common.train.logging import LoggingConfig
    from common.train.loop import TrainConfig, train
    from common.train.mesh import MeshConfig

    def run(steps, resume):
        cfg = TrainConfig(steps=steps, run_dir=str(tmp_path), run_name="gan", resume=resume,
                          mesh=MeshConfig(2, 2, 2), eval_every=3, eval_batches=1,
                          checkpoint=CheckpointConfig(every=3),
                          logging=LoggingConfig(wandb_mode="disabled", progress=False,
                                                log_every=1))
        program = gan_program(Gen, Disc, gen_fn, disc_fn, optax.adam(1e-3), optax.adam(1e-3),
                              GANConfig(disc_start_step=2, r1_weight=1.0))
        return train(cfg, kind="tests.gan", program=program, train_data=WaveIterator(),
                     eval_data=WaveIterator, config={"kind": "gan"})

    full = run(6, False)
    assert [h["step"] for h in full.history] == [1, 2, 3, 4, 5, 6]
    assert [h["disc/started"] for h in full.history] == [0, 0, 1, 1, 1, 1]
    assert [h["step"] for h in full.eval_history] == [3, 6]
    shutil.rmtree(tmp_path / "gan")
    run(3, False)
    resumed = run(6, True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history[3:]]
    gen, _ = load_model(tmp_path / "gan", lambda c: Gen(nnx.Rngs(9)))
    out = gen(_batch(0)["x"])
    assert out.shape == (4, 32, 1)


@pytest.mark.slow  # a loop run on a 2x2x2 mesh
def test_gan_program_accumulates_in_the_loop(tmp_path):
    from common.train.gan import gan_program
    from common.train.logging import LoggingConfig
    from common.train.loop import TrainConfig, train
    from common.train.mesh import MeshConfig

    # train.grad_accum reaches the GAN step: the loop accepts the program built for it,
    # and the sharded batch of 4 splits into 2 micro-batches.
    cfg = TrainConfig(steps=2, run_dir=str(tmp_path), run_name="acc", grad_accum=2,
                      mesh=MeshConfig(2, 2, 2),
                      logging=LoggingConfig(wandb_mode="disabled", progress=False, log_every=1))
    program = gan_program(Gen, Disc, gen_fn, disc_fn, optax.adam(1e-3), optax.adam(1e-3),
                          GANConfig(r1_weight=1.0), grad_accum=cfg.grad_accum)
    result = train(cfg, kind="tests.gan", program=program, train_data=WaveIterator(),
                   config={"kind": "gan"})
    assert [h["step"] for h in result.history] == [1, 2]
    assert all(np.isfinite(v) for h in result.history for v in h.values())


# -- padding: a left-padded batch with a valid mask ---------------------------------------


class MaskedDisc(Disc):
    """``Disc`` with the masks of its outputs: full rate, and 2x pooled (a pooled sample
    is valid when both of its samples are)."""

    @staticmethod
    def masks(valid):
        full = valid[..., None]
        pooled = (valid[:, ::2] & valid[:, 1::2])[..., None]
        return [full, pooled], [[full], [pooled]]


def masked_gen_fn(gen, batch, key):
    real, valid = batch["x"], batch["valid"]
    # The generator sees no padding, but its output there is junk (a copy of the input's).
    fake = jnp.where(valid[..., None], gen(jnp.where(valid[..., None], real, 0.0)), real)
    rec = jnp.sum(jnp.abs(fake - real) * valid[..., None]) / jnp.sum(valid)
    return fake, real, rec, {"l1": rec}, valid


def masked_disc_fn(disc, x, valid):
    logits, feats = disc(x)
    return logits, feats, (None if valid is None else disc.masks(valid))


def _padded_batch(seed, junk_seed=None, pads=(0, 5, 12, 20)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((len(pads), 32, 1)).astype(np.float32)
    valid = np.arange(32)[None, :] >= np.array(pads)[:, None]
    if junk_seed is not None:
        junk = 100.0 * np.random.default_rng(junk_seed).standard_normal(x.shape)
        x = np.where(valid[..., None], x, junk).astype(np.float32)
    return {"x": x, "valid": valid}


def _masked_setup(cfg, tx_fn=optax.adam, grad_accum=1):
    gtx, dtx = tx_fn(1e-2), tx_fn(1e-2)
    ggd, gs = TrainState.create(Gen(nnx.Rngs(0)), gtx, jax.random.key(0))
    dgd, ds = TrainState.create(MaskedDisc(nnx.Rngs(1)), dtx, jax.random.key(1))
    state = GANState(gen=gs, disc=ds, started=jnp.array(False))
    step = make_gan_step(ggd, dgd, masked_gen_fn, masked_disc_fn, gtx, dtx, cfg,
                         grad_accum=grad_accum)
    return state, jax.jit(step), (ggd, dgd)


@pytest.mark.parametrize("cfg,grad_accum", [
    (GANConfig(r1_weight=1.0, instance_noise=0.1), 1),
    pytest.param(GANConfig(adaptive_weight=True, feature_weight=2.0), 2,
                 marks=pytest.mark.slow),
], ids=["r1_noise", "adaptive_accum"])
def test_padding_content_changes_neither_model(cfg, grad_accum):
    """Two batches that differ only in what their padding holds give the same losses and
    the same updates of both models (so the same gradients)."""
    state, step, _ = _masked_setup(cfg, optax.sgd, grad_accum)
    new_a, m_a = step(state, _padded_batch(0, junk_seed=1))  # not donated: state reused
    new_b, m_b = step(state, _padded_batch(0, junk_seed=2))
    assert set(m_a) == set(m_b)
    for k in m_a:
        np.testing.assert_array_equal(m_a[k], m_b[k], err_msg=k)
    for model in ("gen", "disc"):
        for a, b in zip(jax.tree.leaves(getattr(new_a, model).params),
                        jax.tree.leaves(getattr(new_b, model).params), strict=True):
            np.testing.assert_array_equal(a, b)
    assert float(m_a["disc/started"]) == 1.0 and float(m_a["disc/loss"]) > 0


def test_gan_losses_average_over_the_valid_positions():
    cfg = GANConfig(feature_weight=2.0)
    state, step, (_, dgd) = _masked_setup(cfg)
    batch = _padded_batch(3, junk_seed=4)
    _, m = step(state, batch)
    # Reference: the discriminator on zero-padded inputs, losses masked by hand.
    disc = nnx.merge(dgd, state.disc.params, state.disc.rest)
    gen = nnx.merge(_masked_setup(cfg)[2][0], state.gen.params, state.gen.rest)
    fake, real, _, _, valid = masked_gen_fn(gen, batch, None)
    zero = lambda x: np.where(valid[..., None], np.asarray(x), 0.0)
    (lf, ff), (lr, fr) = disc(zero(fake)), disc(zero(real))
    lmasks, fmasks = MaskedDisc.masks(jnp.asarray(valid))
    mean = lambda x, mk: float(np.sum(np.where(mk, x, 0)) / np.sum(np.broadcast_to(mk, x.shape)))
    adv = sum(mean((1 - np.asarray(x)) ** 2, mk) for x, mk in zip(lf, lmasks, strict=True))
    fm = sum(mean(np.abs(np.asarray(f[0]) - np.asarray(r[0])), mk[0])
             for f, r, mk in zip(ff, fr, fmasks, strict=True))
    d_loss = sum(mean((1 - np.asarray(r)) ** 2, mk) + mean(np.asarray(f) ** 2, mk)
                 for r, f, mk in zip(lr, lf, lmasks, strict=True))
    np.testing.assert_allclose(float(m["gen/adv_loss"]), adv, rtol=1e-5)
    np.testing.assert_allclose(float(m["gen/feature_loss"]), fm, rtol=1e-5)
    np.testing.assert_allclose(float(m["disc/loss"]), d_loss, rtol=1e-5)


# -- EMA weights and the discriminator's schedule ---------------------------------------


def test_ema_tracks_the_generator():
    cfg = GANConfig(ema_decay=0.75)
    state, step, _ = _masked_setup(cfg, optax.sgd)
    state = dataclasses.replace(state, ema=jax.tree.map(jnp.copy, state.gen.params))
    expected = jax.device_get(state.ema)
    for i in range(3):
        state, _ = step(state, _padded_batch(i))
        params = jax.device_get(state.gen.params)
        expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, expected, params)
        for a, b in zip(jax.tree.leaves(state.ema), jax.tree.leaves(expected), strict=True):
            assert_close(a, b, 1e-6)
    # It lags the parameters (they moved, so it differs from them).
    assert any(not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(state.ema), jax.tree.leaves(state.gen.params), strict=True))
    with pytest.raises(ValueError, match=r"gan\.ema_decay"):
        GANConfig(ema_decay=1.0)


def _opt_counts(opt_state):
    return {int(x) for path, x in jax.tree_util.tree_flatten_with_path(opt_state)[0]
            if "count" in jax.tree_util.keystr(path)}


def test_disc_schedule_counts_from_its_start():
    from common.train.configs import OptimizerConfig, TrainConfig
    from common.train.gan import disc_optim

    state, step, _ = _masked_setup(GANConfig(disc_start_step=3))
    for i in range(5):
        state, _ = step(state, _padded_batch(i))
    # Five steps, the last two with the discriminator on: its optimizer counted two
    # updates (its schedule is at step 2), the generator's five.
    assert _opt_counts(state.disc.opt_state) == {2}
    assert _opt_counts(state.gen.opt_state) == {5}
    # A decaying schedule ends with the run: the steps left after the start.
    optim = OptimizerConfig(schedule="cosine", warmup_steps=10)
    resolved = disc_optim(TrainConfig(steps=1000), optim, GANConfig(disc_start_step=300))
    assert resolved.total_steps == 700
    fixed = dataclasses.replace(optim, total_steps=50)
    assert disc_optim(TrainConfig(steps=1000), fixed, GANConfig(disc_start_step=300)) == fixed


@pytest.mark.slow  # a few steps of the loop, twice
def test_gan_program_keeps_checkpoints_and_evaluates_ema_weights(tmp_path):
    from common.train.checkpoint import CheckpointConfig, Checkpointer, load_model
    from common.train.gan import gan_program
    from common.train.logging import LoggingConfig
    from common.train.loop import TrainConfig, train
    from common.train.mesh import MeshConfig

    def run(steps, resume, name="ema"):
        cfg = TrainConfig(steps=steps, run_dir=str(tmp_path), run_name=name, resume=resume,
                          mesh=MeshConfig(2, 2, 2), eval_every=2, eval_batches=1,
                          checkpoint=CheckpointConfig(every=2),
                          logging=LoggingConfig(wandb_mode="disabled", progress=False,
                                                log_every=1))
        program = gan_program(Gen, Disc, gen_fn, disc_fn, optax.adam(1e-2), optax.adam(1e-2),
                              GANConfig(ema_decay=0.5))
        return program, train(cfg, kind="tests.gan", program=program,
                              train_data=WaveIterator(), eval_data=WaveIterator,
                              config={"kind": "gan"})

    program, full = run(4, False)
    ema, params = full.state.ema, full.state.gen.params
    assert any(not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(ema), jax.tree.leaves(params), strict=True))
    # Evaluation, the logging hooks' model and load_model(("ema", "model")) use the EMA.
    batch = next(WaveIterator())
    gen = nnx.merge(nnx.graphdef(program.model(full.state)), ema, full.state.gen.rest)
    gen.eval()
    expected = gen_fn(gen, batch, None)[2]
    got = program.evaluate(full.state, batch, jax.random.key(0))["loss"]
    assert_close(got, expected, 1e-6)
    for a, b in zip(jax.tree.leaves(nnx.state(program.model(full.state), nnx.Param)),
                    jax.tree.leaves(ema), strict=True):
        np.testing.assert_array_equal(a, b)
    assert Checkpointer(tmp_path / "ema", read_only=True).has_item("ema", 4)
    loaded, _ = load_model(tmp_path / "ema", lambda c: Gen(nnx.Rngs(9)), item=("ema", "model"))
    trained, _ = load_model(tmp_path / "ema", lambda c: Gen(nnx.Rngs(9)))
    for a, b, c, d in zip(jax.tree.leaves(nnx.state(loaded, nnx.Param)), jax.tree.leaves(ema),
                          jax.tree.leaves(nnx.state(trained, nnx.Param)),
                          jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    # A resumed run restores the EMA too and continues exactly.
    run(2, False, "ema2")
    _, resumed = run(4, True, "ema2")
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history[2:]]
    for a, b in zip(jax.tree.leaves(resumed.state.ema), jax.tree.leaves(ema), strict=True):
        np.testing.assert_array_equal(a, b)


def test_warmup_step_is_the_full_step_before_the_disc_starts():
    # The generator-only step that gan_program runs before disc_start_step gives the
    # full step's update (adversarial weight 0, discriminator untouched), so a run can
    # skip the discriminator until it starts without changing what it learns.
    from common.train.gan import make_gan_warmup_step

    cfg = GANConfig(disc_start_step=5)
    state, step, (ggd, _) = _setup(cfg)
    warm = jax.jit(make_gan_warmup_step(ggd, gen_fn, optax.adam(1e-2), cfg))
    full = jax.jit(step)
    a = b = state
    for i in range(2):
        a, ma = full(a, _batch(i))
        b, mb = warm(b, _batch(i))
        assert_close(mb["gen/rec_loss"], ma["gen/rec_loss"], 1e-6)
        assert_close(mb["loss"], ma["loss"], 1e-6)
    def arrays(s):  # every leaf but the PRNG keys
        return [x for x in jax.tree.leaves(s) if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)]

    for x, y in zip(arrays(a), arrays(b), strict=True):
        assert_close(y, x, 1e-6)
