"""Content encoder: shapes, CTC through it, padding by multiples of 4 frames, config."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.losses import ctc_loss
from common.speech.config import ContentEncoderConfig
from common.speech.content import ContentEncoder

CFG = dataclasses.replace(ContentEncoderConfig.tiny(vocab=7), n_mels=20, ctc_upsample=2)


@pytest.fixture(scope="module")
def enc():
    return ContentEncoder(CFG, rngs=nnx.Rngs(0))


def test_shapes_and_ctc_gradient(enc):
    rng = np.random.default_rng(0)
    mel = jnp.asarray(rng.standard_normal((2, 41, 20)), jnp.float32)
    valid = jnp.array([[True] * 41, [False] * 8 + [True] * 33])
    out = enc(mel, valid)
    assert out.features.shape == (2, 11, 64) and out.valid.shape == (2, 11)
    assert out.logits.shape == (2, 22, 7) and out.logit_valid.shape == (2, 22)
    labels = jnp.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    label_valid = labels > 0
    graphdef, params, rest = nnx.split(enc, nnx.Param, ...)

    def loss(p, r):
        o = nnx.merge(graphdef, p, r, copy=True)(mel, valid)
        return ctc_loss(o.logits, o.logit_valid, labels, label_valid)[0]
    value, grads = jax.jit(jax.value_and_grad(loss))(params, rest)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_left_padding_by_four_frames_changes_nothing(enc):
    rng = np.random.default_rng(1)
    mel = jnp.asarray(rng.standard_normal((1, 30, 20)), jnp.float32)
    junk = jnp.asarray(rng.standard_normal((1, 8, 20)) * 30, jnp.float32)
    padded = jnp.concatenate([junk, mel], axis=1)
    valid = jnp.arange(38)[None] >= 8
    enc.eval()
    try:
        alone = enc(mel, jnp.ones((1, 30), bool))
        got = enc(padded, valid)
    finally:
        enc.train()
    np.testing.assert_allclose(got.features[:, 2:], alone.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.logits[:, 4:], alone.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.valid[:, 2:], alone.valid)


def test_config_errors():
    with pytest.raises(ValueError, match="heads"):
        ContentEncoderConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="ctc_upsample"):
        ContentEncoderConfig(ctc_upsample=3)
    with pytest.raises(ValueError, match="vocab"):
        ContentEncoderConfig(vocab=1)
    out = ContentEncoder(dataclasses.replace(CFG, vocab=0), rngs=nnx.Rngs(0))(
        jnp.zeros((1, 8, 20)), jnp.ones((1, 8), bool))
    assert out.logits is None and out.features.shape == (1, 2, 64)
