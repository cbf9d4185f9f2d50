"""AAM softmax against ArcFace's definition computed by angle in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.losses import aam_softmax_loss


def reference(emb, w, labels, margin, scale, easy):
    """The loss written from the paper: angles by arccos, the margin added to the
    target's angle, SpeechBrain's fallbacks past pi - m (hard) or at cos <= 0 (easy)."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    c = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(e @ c.T, -1, 1)
    theta = np.arccos(cos)
    logits = cos.copy()
    for i, y in enumerate(labels):
        t = theta[i, y]
        if easy:
            logits[i, y] = math.cos(t + margin) if cos[i, y] > 0 else cos[i, y]
        elif t < math.pi - margin:
            logits[i, y] = math.cos(t + margin)
        else:
            logits[i, y] = cos[i, y] - margin * math.sin(margin)
    z = scale * logits
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


@pytest.mark.parametrize("easy", [False, True], ids=["hard", "easy"])
@pytest.mark.parametrize("margin", [0.0, 0.2, 0.5])
def test_matches_the_definition(easy, margin):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((16, 8))
    w = rng.standard_normal((5, 8))
    labels = rng.integers(0, 5, 16)
    # a few targets near the fallback region: an embedding almost opposite its class
    emb[0] = -w[labels[0]] + 0.05 * rng.standard_normal(8)
    emb[1] = -w[labels[1]]
    ref = reference(emb, w, labels, margin, 30.0, easy)
    loss, m = aam_softmax_loss(jnp.asarray(emb, jnp.float32), jnp.asarray(w, jnp.float32),
                               jnp.asarray(labels), margin=margin, scale=30.0,
                               easy_margin=easy)
    np.testing.assert_allclose(float(loss), ref.mean(), rtol=1e-5)
    acc = np.mean(np.argmax(emb / np.linalg.norm(emb, axis=1, keepdims=True)
                            @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T, axis=1)
                  == labels)
    np.testing.assert_allclose(float(m["aam/accuracy"]), acc, rtol=1e-6)


def test_invalid_examples_do_not_count_and_gradients_stay_finite():
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
    labels = jnp.array([0, 1, 2, 3])
    emb = w[labels]  # every embedding exactly on its class: cos = 1
    valid = jnp.array([True, True, False, True])
    junk = emb.at[2].set(1e3)
    a, _ = aam_softmax_loss(emb, w, labels, valid)
    b, _ = aam_softmax_loss(junk, w, labels, valid)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
    grads = jax.grad(lambda e, w: aam_softmax_loss(e, w, labels)[0], argnums=(0, 1))(emb, w)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_margin_raises_the_loss_and_training_separates_classes():
    """The margin makes the target harder (loss above plain softmax), and a few steps of
    gradient descent on the embeddings push each to its own class."""
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    emb = jnp.asarray(rng.standard_normal((9, 4)), jnp.float32)
    labels = jnp.arange(9) % 3
    plain, _ = aam_softmax_loss(emb, w, labels, margin=0.0)
    marg, _ = aam_softmax_loss(emb, w, labels, margin=0.2)
    assert float(marg) > float(plain)
    _, before = aam_softmax_loss(emb, w, labels)
    step = jax.jit(jax.grad(lambda e: aam_softmax_loss(e, w, labels, scale=10.0)[0]))
    for _ in range(100):
        emb = emb - 0.5 * step(emb)
    _, after = aam_softmax_loss(emb, w, labels)
    assert float(before["aam/accuracy"]) < 1.0 and float(after["aam/accuracy"]) == 1.0
    assert float(after["aam/target_cos"]) > float(before["aam/target_cos"]) + 0.3
