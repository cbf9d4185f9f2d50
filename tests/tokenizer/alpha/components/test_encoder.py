"""RawEncoder / RawDecoder: shapes, masks, padding invariance, causality, jit and grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.alpha.components.encoder import ConvStackConfig, RawDecoder, RawEncoder
from tokenizer.codec.masks import lengths_to_valid, valid_lengths


def _cfg(causal=False, **kw):
    base = dict(channels=4, decoder_channels=16, strides=(2, 3), latent_dim=8,
                transformer_layers=1, transformer_heads=2, causal=causal)
    return ConvStackConfig(**(base | kw))


def _models(cfg):
    return RawEncoder(cfg, rngs=nnx.Rngs(0)), RawDecoder(cfg, rngs=nnx.Rngs(1))


# The non-causal stack also runs in every codec test (test_model.py); causal is the fast check.
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_shapes_axes_and_range(causal):
    cfg = _cfg(causal)
    enc, dec = _models(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 5 * cfg.hop, 1))
    valid = lengths_to_valid(jnp.array([30, 17]), 30)
    z, zv = enc(x, valid)
    assert z.shape == (2, 5, cfg.latent_dim) and zv.shape == (2, 5)
    np.testing.assert_array_equal(valid_lengths(zv), [5, 3])
    y = dec(z, zv)
    assert y.shape == x.shape
    assert float(jnp.max(jnp.abs(y))) <= 1.0
    assert float(jnp.max(jnp.abs(y[1, :12]))) == 0.0  # padded samples are zero
    assert float(jnp.max(jnp.abs(z[1, :2]))) == 0.0
    assert_params_have_axes(enc)
    assert_params_have_axes(dec)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_length_must_be_multiple_of_hop():
    cfg = _cfg()
    enc, _ = _models(cfg)
    with pytest.raises(ValueError, match="multiple of the hop"):
        enc(jnp.zeros((1, 7, 1)), jnp.ones((1, 7), bool))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_left_padding_invariance(causal):
    """Padding before an utterance (a hop multiple, filled with garbage) changes nothing
    on its valid frames or samples: batches of mixed lengths are exact."""
    cfg = _cfg(causal)
    enc, dec = _models(cfg)
    hop = cfg.hop
    x = 0.3 * jax.random.normal(jax.random.key(1), (1, 8 * hop, 1))
    z, zv = enc(x, jnp.ones((1, 8 * hop), bool))
    y = dec(z, zv)
    pad = 3 * hop
    xp = jnp.concatenate([jnp.full((1, pad, 1), 5.0), x], axis=1)
    vp = jnp.arange(xp.shape[1])[None] >= pad
    zp, zvp = enc(xp, vp)
    yp = dec(zp, zvp)
    assert_close(zp[:, 3:], z, 1e-5)
    assert_close(yp[:, pad:], y, 1e-5)
    assert float(jnp.max(jnp.abs(yp[:, :pad]))) == 0.0


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_causal_mode_ignores_the_future():
    cfg = _cfg(True, window=None)
    enc, dec = _models(cfg)
    hop = cfg.hop
    n = 8 * hop
    x = 0.3 * jax.random.normal(jax.random.key(2), (1, n, 1))
    x2 = x.at[:, 5 * hop:].set(0.7)  # change frames 5.. only
    v = jnp.ones((1, n), bool)
    z, zv = enc(x, v)
    z2, _ = enc(x2, v)
    assert_close(z2[:, :5], z[:, :5], 1e-6)
    assert float(jnp.max(jnp.abs(z2[:, 5:] - z[:, 5:]))) > 1e-4
    y, y2 = dec(z, zv), dec(z.at[:, 5:].set(1.0), zv)
    assert_close(y2[:, :5 * hop], y[:, :5 * hop], 1e-6)

    # and the non-causal model does look ahead
    enc_nc, _ = _models(_cfg(False))
    a, _ = enc_nc(x, v)
    b, _ = enc_nc(x2, v)
    assert float(jnp.max(jnp.abs(a[:, :5] - b[:, :5]))) > 1e-4


@pytest.mark.slow
def test_jit_and_grad_through_both():
    cfg = _cfg(transformer_layers=0)
    enc, dec = _models(cfg)
    x = 0.3 * jax.random.normal(jax.random.key(3), (2, 4 * cfg.hop, 1))
    valid = lengths_to_valid(jnp.array([24, 13]), 24)

    @nnx.jit
    def loss_fn(enc, dec, x, valid):
        def f(enc, dec):
            z, zv = enc(x, valid)
            y = dec(z, zv)
            return jnp.sum(jnp.where(valid[..., None], (y - x) ** 2, 0.0))
        return nnx.value_and_grad(f, argnums=(0, 1))(enc, dec)

    loss, (g_enc, g_dec) = loss_fn(enc, dec, x, valid)
    assert np.isfinite(float(loss))
    for g in (g_enc, g_dec):
        leaves = jax.tree.leaves(g)
        assert leaves and all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
        assert sum(float(jnp.sum(jnp.abs(leaf))) for leaf in leaves) > 0


def test_default_hop_is_50hz_at_24k_and_25hz_option():
    assert ConvStackConfig().hop == 480  # 24000 / 480 = 50 Hz
    assert ConvStackConfig(strides=(2, 4, 6, 10, 2)).hop == 960  # 25 Hz


@pytest.mark.slow
def test_bf16_compute_keeps_float32_params():
    cfg = _cfg(dtype="bfloat16")
    enc, dec = _models(cfg)
    x = 0.3 * jax.random.normal(jax.random.key(4), (1, 4 * cfg.hop, 1))
    z, zv = enc(x, jnp.ones(x.shape[:2], bool))
    assert z.dtype == jnp.bfloat16
    y = dec(z, zv)
    assert y.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y)))
    params = jax.tree.leaves(nnx.state(enc, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
