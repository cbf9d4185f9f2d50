"""Discriminators: shapes, the period fold, the MSD pooling, STFT bands, grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.audio.stft import stft
from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.codec.discriminators import (
    Discriminator,
    DiscriminatorConfig,
    PeriodDiscriminator,
    STFTDiscriminator,
    _avg_pool,
)

TINY = DiscriminatorConfig(mpd_channels=(4, 8), msd_channels=(4, 8, 16), stft_ffts=(128, 64),
                           stft_channels=4)


@pytest.mark.slow
def test_outputs_per_sub_discriminator():
    d = Discriminator(TINY, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 960, 1))
    logits, feats = d(x)
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
    # scales halve the rate (PyTorch AvgPool1d(4, 2, padding=2): N / 2 + 1)
    assert [feats[i][0].shape[1] for i in (5, 6, 7)] == [960, 481, 241]
    # [B, N] input is accepted too
    lg2, _ = d(x[..., 0])
    assert_close(lg2[0], logits[0], 1e-6)
    assert_params_have_axes(d)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_period_fold_is_time_major():
    """Sample t*p + j lands at row t, column j: zeroing the samples of one column
    changes only that column of the branch's first feature map (kernels are (5, 1))."""
    d = PeriodDiscriminator(3, (4,), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 30, 1))
    x2 = x.at[:, 1::3].set(0.0)
    h1, h2 = d(x)[1][0], d(x2)[1][0]
    assert h1.shape == (1, 4, 3, 4)
    diff = jnp.abs(h1 - h2).max(axis=(0, 1, 3))
    assert float(diff[0]) == 0.0 and float(diff[2]) == 0.0 and float(diff[1]) > 0
    # a length that is not a multiple of the period is reflect-padded at the end
    _out, feats = d(x[:, :29])
    assert feats[0].shape[1:3] == (4, 3)


def test_avg_pool_matches_pytorch_semantics():
    x = np.random.default_rng(0).normal(size=(2, 11, 3)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (2, 2), (0, 0)))
    n_out = (11 + 4 - 4) // 2 + 1
    ref = np.stack([padded[:, 2 * i:2 * i + 4].sum(1) / 4 for i in range(n_out)], 1)
    assert_close(_avg_pool(jnp.asarray(x)), ref, 1e-6)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_stft_bands_cover_every_bin_once():
    d = STFTDiscriminator(128, 4, TINY.stft_bands, rngs=nnx.Rngs(0))
    edges = [b for band in d.bands for b in band]
    assert edges[0] == 0 and edges[-1] == 65
    assert all(d.bands[i][1] == d.bands[i + 1][0] for i in range(len(d.bands) - 1))
    # the first conv sees (real, imag) of our STFT
    x = jax.random.normal(jax.random.key(2), (1, 512, 1))
    spec = stft(x[..., 0], 128, 32)
    lo, hi = d.bands[0]
    band = jnp.stack([spec.real, spec.imag], -1)[:, :, lo:hi]
    _, feats = d(x)
    assert_close(feats[0], jax.nn.leaky_relu(d.band_convs[0][0](band), 0.1), 1e-6)
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
