"""Discriminators: shapes, the period fold, MelGAN's pooling, STFT bands, grads, the
valid masks and padding, DAC's preprocessing, bfloat16."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.audio.stft import stft
from common.losses.adversarial import lsgan_d_loss
from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.codec.discriminators import (
    Discriminator,
    DiscriminatorConfig,
    PeriodDiscriminator,
    STFTDiscriminator,
    _melgan_pool,
    dac_preprocess,
)

TINY = DiscriminatorConfig(mpd_channels=(4, 8), msd_channels=(4, 8, 16), stft_ffts=(128, 64),
                           stft_channels=4)


@pytest.mark.slow
def test_outputs_per_sub_discriminator():
    d = Discriminator(TINY, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 960, 1))
    # one compiled program (eager dispatch compiles every conv on its own)
    (logits, feats), (lg2, _) = jax.jit(lambda x: (d(x), d(x[..., 0])))(x)
    names = d.names()
    assert names == ["mpd2", "mpd3", "mpd5", "mpd7", "mpd11", "msd0", "msd1", "msd2",
                     "stft128", "stft64"]
    assert len(logits) == len(feats) == len(names)
    for name, lg, fs in zip(names, logits, feats, strict=True):
        assert lg.shape[0] == 2 and lg.shape[-1] == 1, name
        assert all(f.shape[0] == 2 for f in fs) and fs, name
        if name.startswith("mpd"):
            p = int(name[3:])
            assert lg.shape[2] == p and len(fs) == 3  # 2 strided + 1 plain conv
        if name.startswith("stft"):
            assert len(fs) == 5 * 5  # five bands of five convs
    # scales halve the rate (MelGAN's AvgPool1d(4, 2, padding=1): N // 2)
    assert [feats[i][0].shape[1] for i in (5, 6, 7)] == [960, 480, 240]
    # [B, N] input is accepted too
    assert_close(lg2[0], logits[0], 1e-6)
    assert_params_have_axes(d)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_period_fold_is_time_major():
    """Sample t*p + j lands at row t, column j: zeroing the samples of one column
    changes only that column of the branch's first feature map (kernels are (5, 1))."""
    d = PeriodDiscriminator(3, (4,), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 30, 1))
    x2 = x.at[:, 1::3].set(0.0)
    h1, h2 = jax.jit(lambda a, b: (d(a)[1][0], d(b)[1][0]))(x, x2)
    assert h1.shape == (1, 4, 3, 4)
    diff = jnp.abs(h1 - h2).max(axis=(0, 1, 3))
    assert float(diff[0]) == 0.0 and float(diff[2]) == 0.0 and float(diff[1]) > 0
    # a length that is not a multiple of the period is reflect-padded at the end
    _out, feats = nnx.eval_shape(lambda: d(x[:, :29]))
    assert feats[0].shape[1:3] == (4, 3)


@pytest.mark.parametrize("n", [11, 12])
def test_melgan_pool_matches_pytorch_semantics(n):
    """MelGAN's ``AvgPool1d(4, stride=2, padding=1, count_include_pad=False)``."""
    x = np.random.default_rng(0).normal(size=(2, n, 3)).astype(np.float32)
    n_out = (n + 2 - 4) // 2 + 1
    ref = []
    for i in range(n_out):
        lo, hi = max(2 * i - 1, 0), min(2 * i + 3, n)  # window [2i - 1, 2i + 3), in range
        ref.append(x[:, lo:hi].mean(1))
    assert_close(_melgan_pool(jnp.asarray(x)), np.stack(ref, 1), 1e-6)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_stft_bands_cover_every_bin_once():
    d = STFTDiscriminator(128, 4, TINY.stft_bands, rngs=nnx.Rngs(0))
    edges = [b for band in d.bands for b in band]
    assert edges[0] == 0 and edges[-1] == 65
    assert all(d.bands[i][1] == d.bands[i + 1][0] for i in range(len(d.bands) - 1))
    # the first conv sees (real, imag) of our STFT
    x = jax.random.normal(jax.random.key(2), (1, 512, 1))
    lo, hi = d.bands[0]

    @jax.jit
    def both(x):
        spec = stft(x[..., 0], 128, 32)
        band = jnp.stack([spec.real, spec.imag], -1)[:, :, lo:hi]
        return d(x)[1][0], jax.nn.leaky_relu(d.band_convs[0][0](band), 0.1)

    assert_close(*both(x), 1e-6)
    with pytest.raises(ValueError, match="too small"):
        STFTDiscriminator(8, 4, TINY.stft_bands, rngs=nnx.Rngs(0))


def test_config_errors():
    with pytest.raises(ValueError, match="multiples of 4"):
        DiscriminatorConfig(msd_channels=(6, 8))
    with pytest.raises(ValueError, match="bad band"):
        DiscriminatorConfig(stft_bands=((0.5, 0.2),))
    with pytest.raises(ValueError, match="no sub-discriminators"):
        Discriminator(DiscriminatorConfig(periods=(), msd_channels=(), stft_ffts=()),
                      rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_jit_grad_every_sub_discriminator_sees_the_input():
    d = Discriminator(TINY, rngs=nnx.Rngs(0))
    x = 0.3 * jax.random.normal(jax.random.key(3), (1, 960, 1))

    @jax.jit
    def grads(x):
        return [jax.grad(lambda x, i=i: jnp.sum(d(x)[0][i] ** 2))(x)
                for i in range(len(d.names()))]

    for name, g in zip(d.names(), grads(x), strict=True):
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.abs(g).sum()) > 0, name

    @nnx.jit
    def param_grads(d, x):
        return nnx.grad(lambda d: sum(jnp.mean(lg ** 2) for lg in d(x)[0]))(d)

    leaves = jax.tree.leaves(param_grads(d, x))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


N, PADS = 960, np.array([0, 100, 517])  # left padding of each example


def _valid(n=N, pads=PADS):
    return jnp.asarray(np.arange(n)[None, :] >= pads[:, None])


def _expected_mask(shape, first_sample):
    """The mask of an output whose position (t, j) advances from input sample
    ``first_sample(t, j)``: valid when that sample is (left padding: the hop is then)."""
    t = np.arange(shape[1])[:, None]
    j = np.arange(shape[2] if len(shape) == 4 else 1)[None, :]
    start = first_sample(t, j)
    return start[None] >= PADS[:, None, None]  # [B, T, p or 1]


MASK_CFG = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 8), msd_scales=3,
                               msd_channels=(4, 8, 16), stft_ffts=(128,), stft_channels=4)


def test_masks_follow_the_left_padding():
    # Masks need the layout only: an abstract discriminator (no weights) will do.
    d = nnx.eval_shape(lambda: Discriminator(MASK_CFG, rngs=nnx.Rngs(0)))
    masks = jax.jit(d.masks)
    logit_masks, feat_masks = masks(_valid())
    assert len(logit_masks) == len(feat_masks) == len(d.names())
    for name, lm, fms in zip(d.names(), logit_masks, feat_masks, strict=True):
        assert all(m.dtype == jnp.bool_ for m in fms) and lm.dtype == jnp.bool_
        if name.startswith("mpd"):
            p = int(name[3:])
            # rows fold p samples; the strided (5, 1) convs step 3 rows each
            assert len(fms) == len(MASK_CFG.mpd_channels) + 1
            for i, m in enumerate(fms):
                hop = 3 ** min(i + 1, len(MASK_CFG.mpd_channels))
                assert m.shape == (3, -(-N // (p * hop)), p, 1), name
                want = _expected_mask(m.shape, lambda t, j, h=hop, p=p: t * h * p + j)
                np.testing.assert_array_equal(np.asarray(m)[..., 0], want, err_msg=name)
        elif name.startswith("msd"):
            scale = 2 ** int(name[3:])  # MelGAN's pool halves the rate per scale
            hops = np.cumprod([1, 4, 4, 1])  # kernel 15, two strided by 4, kernel 5
            for m, hop in zip(fms, hops, strict=True):
                assert m.shape == (3, -(-(N // scale) // hop), 1), name
                want = _expected_mask(m.shape, lambda t, j, h=hop * scale: t * h + 0 * j)
                np.testing.assert_array_equal(np.asarray(m), want, err_msg=name)
        else:
            hop = int(name[4:]) // 4  # a frame is valid when its centre t * hop is
            assert lm.shape == (3, N // hop + 1, 1, 1)
            want = _expected_mask(lm.shape[:2], lambda t, j, h=hop: t * h + 0 * j)[..., 0]
            want &= (np.arange(lm.shape[1]) * hop < N)[None]
            np.testing.assert_array_equal(np.asarray(lm)[:, :, 0, 0], want, err_msg=name)
            assert all(m is lm or np.array_equal(m, lm) for m in fms)
        if not name.startswith("stft"):
            np.testing.assert_array_equal(lm, fms[-1])  # the logits' conv is unstrided
    # Nothing padded: every position is valid (but the STFT frame centred past the end).
    for name, m in zip(d.names(), masks(jnp.ones((1, N), bool))[0], strict=True):
        m = np.asarray(m)
        assert m[:, :-1].all() and (m.all() or name.startswith("stft")), name


def _dac_preprocess_ref(y):
    """DAC's ``Discriminator.preprocess`` in numpy, ``[B, 1, T]`` as PyTorch."""
    y = y - y.mean(axis=-1, keepdims=True)
    return 0.8 * y / (np.abs(y).max(axis=-1, keepdims=True) + 1e-9)


def test_dac_preprocess_matches_dac_and_ignores_padding():
    rng = np.random.default_rng(0)
    x = (0.3 + rng.normal(size=(3, N, 1))).astype(np.float32)
    ref = _dac_preprocess_ref(np.moveaxis(x, 1, 2).astype(np.float64))
    assert_close(dac_preprocess(jnp.asarray(x)), np.moveaxis(ref, 2, 1), 1e-6)
    # With a mask: the valid part alone, the padding zero, whatever it held.
    x2 = np.where(np.asarray(_valid())[..., None], x, 1e3).astype(np.float32)
    out = np.asarray(dac_preprocess(jnp.asarray(x2), _valid()))
    for b, p in enumerate(PADS):
        part = _dac_preprocess_ref(x[b:b + 1, p:, 0][:, None].astype(np.float64))[0, 0]
        assert_close(out[b, p:, 0], part, 1e-6)
        assert not out[b, :p].any()


@pytest.mark.slow  # two eager passes through every sub-discriminator: CI runs it
@pytest.mark.parametrize("preprocess", ["none", "dac"])
def test_padding_content_never_reaches_the_outputs(preprocess):
    cfg = dataclasses.replace(TINY, preprocess=preprocess)
    d = Discriminator(cfg, rngs=nnx.Rngs(0))
    valid = _valid()
    x = jax.random.normal(jax.random.key(0), (3, N, 1))
    junk = jnp.where(valid[..., None], x, 50.0 * jax.random.normal(jax.random.key(1), x.shape))
    run = jax.jit(lambda x: d(x, valid))
    out = run(x)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(run(junk)), strict=True):
        np.testing.assert_array_equal(a, b)
    # every mask broadcasts to its output
    logit_masks, feat_masks = d.masks(valid)
    for lg, fs, lm, fms in zip(*out, logit_masks, feat_masks, strict=True):
        assert jnp.broadcast_shapes(lm.shape, lg.shape) == lg.shape
        assert len(fs) == len(fms)
        assert all(jnp.broadcast_shapes(m.shape, f.shape) == f.shape
                   for f, m in zip(fs, fms, strict=True))
    # and the mask is what makes it invariant: without it the padding is seen
    assert not np.array_equal(jax.jit(d)(x)[0][0], jax.jit(d)(junk)[0][0])


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_bfloat16_discriminator():
    cfg = dataclasses.replace(TINY, dtype="bfloat16")
    d = Discriminator(cfg, rngs=nnx.Rngs(0))
    x = 0.3 * jax.random.normal(jax.random.key(3), (2, N, 1))
    logits, feats = jax.jit(lambda x: d(x, _valid(pads=PADS[:2])))(x)
    assert all(lg.dtype == jnp.bfloat16 for lg in logits)
    assert all(f.dtype == jnp.bfloat16 for fs in feats for f in fs)
    params = jax.tree.leaves(nnx.state(d, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)  # parameters stay float32

    @nnx.jit
    def loss_and_grads(d, x):
        def loss(d):
            lg, _ = d(x, _valid(pads=PADS[:2]))
            return lsgan_d_loss(lg, lg, masks=d.masks(_valid(pads=PADS[:2]))[0])[0]
        return nnx.value_and_grad(loss)(d)

    loss, grads = loss_and_grads(d, x)
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
               for g in jax.tree.leaves(grads))


def test_preprocess_and_dtype_config_errors():
    with pytest.raises(ValueError, match=r"discriminator\.preprocess"):
        DiscriminatorConfig(preprocess="peak")
    with pytest.raises(ValueError, match=r"discriminator\.dtype"):
        DiscriminatorConfig(dtype="bf16")


@pytest.mark.slow  # a GAN step through every sub-discriminator, compiled once: CI runs it
def test_gan_step_with_these_discriminators_ignores_the_padding():
    import optax

    from common.nn.conv import Conv
    from common.train.gan import GANConfig, GANState, make_gan_step
    from common.train.step import TrainState
    from tokenizer.codec.discriminators import gan_disc_fn

    def gen_fn(gen, batch, key):
        real, valid = batch["audio"], batch["audio_valid"]
        fake = gen(jnp.where(valid[..., None], real, 0.0))
        rec = jnp.sum(jnp.abs(fake - real) * valid[..., None]) / jnp.sum(valid)
        return fake, real, rec, {}, valid

    cfg = dataclasses.replace(MASK_CFG, preprocess="dac")
    ggd, gs = TrainState.create(Conv(1, 1, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1),
                                jax.random.key(0))
    dgd, ds = TrainState.create(Discriminator(cfg, rngs=nnx.Rngs(1)), optax.sgd(0.1),
                                jax.random.key(1))
    state = GANState(gen=gs, disc=ds, started=jnp.array(False))
    step = jax.jit(make_gan_step(ggd, dgd, gen_fn, gan_disc_fn, optax.sgd(0.1),
                                 optax.sgd(0.1), GANConfig(r1_weight=1.0)))
    valid = _valid()
    x = 0.3 * jax.random.normal(jax.random.key(2), (3, N, 1))
    outs = []
    for seed in (3, 4):
        junk = jax.random.normal(jax.random.key(seed), x.shape)
        outs.append(step(state, {"audio": jnp.where(valid[..., None], x, junk),
                                 "audio_valid": valid}))
    (a, m_a), (b, m_b) = outs
    for k in m_a:
        np.testing.assert_array_equal(m_a[k], m_b[k], err_msg=k)
    for leaf_a, leaf_b in zip(jax.tree.leaves((a.gen.params, a.disc.params)),
                              jax.tree.leaves((b.gen.params, b.disc.params)), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    assert np.isfinite(float(m_a["disc/r1"])) and float(m_a["disc/r1"]) > 0
