"""SIVE: the DANN schedule, the reversed gradient's sign, the loss and its counter."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.speech.config import ContentEncoderConfig
from worldmodel.audio.sive.model import AdversaryConfig, Sive, dann_lambda, sive_loss

ENC = dataclasses.replace(ContentEncoderConfig.tiny(vocab=6), n_mels=16, layers=1)
ADV = AdversaryConfig(attention_channels=8, hidden=16, warmup_steps=10, a_max=0.5)


def test_dann_schedule():
    lam = [float(dann_lambda(s, 10, 0.5)) for s in (0, 5, 10, 50)]
    np.testing.assert_allclose(lam, [0.0, 0.5 * (2 / (1 + np.exp(-5)) - 1),
                                     0.5 * (2 / (1 + np.exp(-10)) - 1),
                                     0.5 * (2 / (1 + np.exp(-10)) - 1)], rtol=1e-6)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return dict(mel=jnp.asarray(rng.standard_normal((3, 24, 16)), jnp.float32),
                valid=jnp.ones((3, 24), bool),
                phonemes=jnp.array([[1, 2, 0], [3, 4, 5], [2, 0, 0]]),
                phonemes_valid=jnp.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], bool),
                speaker=jnp.array([0, 1, 2]), example_valid=jnp.ones(3, bool))


def test_reversal_flips_the_encoders_gradient(batch):
    """The speaker CE's gradient reaches the classifier unchanged and the encoder
    multiplied by -lambda."""
    model = Sive(ENC, ADV, 3, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def ce(p, lam):
        m = nnx.merge(graphdef, p, rest, copy=True)
        _, logits = m(batch["mel"], batch["valid"], reversal=lam)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(3), batch["speaker"]])

    grad = jax.jit(jax.grad(ce))  # one compile for both (eager compiles every op)
    g_plain = grad(params, 0.0)
    g_rev = grad(params, 0.5)
    enc_plain = jax.tree.leaves(g_plain["encoder"])
    enc_rev = jax.tree.leaves(g_rev["encoder"])
    assert all(float(jnp.abs(a).max()) == 0.0 for a in enc_plain)  # lambda 0: cut
    # with lambda: the encoder gets -lambda x the gradient it would get without reversal.
    # lambda = 0.5, a power of two, scales every backward product exactly: the two
    # gradients agree bit for bit (with 0.7 they differ in float32's last bits).
    def ce_free(p):
        m = nnx.merge(graphdef, p, rest, copy=True)
        out = m.encoder(batch["mel"], batch["valid"])
        logits = m.classify_speaker(out.features, out.valid)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(3), batch["speaker"]])
    g_free = jax.jit(jax.grad(ce_free))(params)
    for a, b in zip(enc_rev, jax.tree.leaves(g_free["encoder"]), strict=True):
        np.testing.assert_array_equal(a, -0.5 * b)
    for a, b in zip(jax.tree.leaves(g_rev["classify"]), jax.tree.leaves(g_free["classify"]),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_loss_counts_training_calls_and_skips_empty_transcripts(batch):
    model = Sive(ENC, ADV, 3, rngs=nnx.Rngs(0))
    loss, m = sive_loss(model, **batch)
    assert np.isfinite(float(loss)) and int(model.calls[...]) == 1
    assert float(m["sive/reversal"]) == 0.0
    sive_loss(model, **batch, train=False)
    assert int(model.calls[...]) == 1
    # the third row has no transcript: its phonemes do not matter
    other = dict(batch, phonemes=batch["phonemes"].at[2].set(jnp.array([5, 5, 5])))
    model.eval()
    a = sive_loss(model, **batch, train=False)[1]["sive/ctc"]
    b = sive_loss(model, **other, train=False)[1]["sive/ctc"]
    assert float(a) == float(b)


def test_adversary_normalises_over_real_rows_only(batch):
    """In training the pooled statistics are batch-normalised over the rows with speech:
    a padding row (no valid frame) changes neither the other rows' logits nor the
    running statistics."""
    model = Sive(ENC, ADV, 3, rngs=nnx.Rngs(0))
    model.train()
    mel, valid = batch["mel"], batch["valid"]
    pad_mel = jnp.concatenate([mel, jnp.full_like(mel[:1], 9.0)])
    pad_valid = jnp.concatenate([valid, jnp.zeros_like(valid[:1])])
    a = nnx.clone(model)
    b = nnx.clone(model)
    _, la = a(mel, valid, reversal=0.0)
    _, lb = b(pad_mel, pad_valid, reversal=0.0)
    np.testing.assert_allclose(lb[:3], la, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.pool_norm.mean[...], a.pool_norm.mean[...], rtol=1e-5,
                               atol=1e-7)
    assert float(jnp.abs(a.pool_norm.mean[...]).max()) > 0.0  # the statistics moved
