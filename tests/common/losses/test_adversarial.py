"""Hinge / least-squares GAN losses and feature matching against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.losses import (
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from tests.helpers import assert_close

# Two discriminators with different output shapes (e.g. a period and a scale discriminator).
SHAPES = ((3, 11, 1), (3, 4, 5))


def _logits(rng, scale=1.5):
    return [rng.normal(0.0, scale, s) for s in SHAPES]


def _mean(x, mask=None):
    if mask is None:
        return x.mean()
    mask = np.broadcast_to(mask, x.shape)
    return x[mask].sum() / max(mask.sum(), 1)


D_REFS = {
    "hinge": (hinge_d_loss, lambda r: np.maximum(0, 1 - r), lambda f: np.maximum(0, 1 + f)),
    "lsgan": (lsgan_d_loss, lambda r: (1 - r) ** 2, lambda f: f**2),
}
G_REFS = {"hinge": (hinge_g_loss, lambda f: -f), "lsgan": (lsgan_g_loss, lambda f: (1 - f) ** 2)}


def _masks():
    m0 = np.arange(11)[None, :, None] < np.array([11, 6, 2])[:, None, None]  # [3, 11, 1]
    return [m0, None]


@pytest.mark.parametrize("kind", D_REFS)
@pytest.mark.parametrize("masked", [False, True])
def test_d_loss_matches_reference(kind, masked, rng):
    fn, real_term, fake_term = D_REFS[kind]
    real, fake = _logits(rng), _logits(rng)
    masks = _masks() if masked else [None, None]
    loss, metrics = fn([r.astype(np.float32) for r in real],
                       [f.astype(np.float32) for f in fake], masks=masks if masked else None)
    per_d = [(_mean(real_term(r), m), _mean(fake_term(f), m))
             for r, f, m in zip(real, fake, masks, strict=True)]
    assert_close(loss, sum(a + b for a, b in per_d))  # summed over discriminators
    assert_close(metrics["real_loss"], sum(a for a, _ in per_d))
    assert_close(metrics["fake_loss"], sum(b for _, b in per_d))
    for i, (a, b) in enumerate(per_d):
        assert_close(metrics[f"d{i}/real_loss"], a)
        assert_close(metrics[f"d{i}/fake_loss"], b)
        assert_close(metrics[f"d{i}/real_logit_mean"], _mean(real[i], masks[i]))
        assert_close(metrics[f"d{i}/fake_logit_mean"], _mean(fake[i], masks[i]))
    assert len(metrics) == 3 + 4 * 2
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())


@pytest.mark.parametrize("kind", G_REFS)
@pytest.mark.parametrize("masked", [False, True])
def test_g_loss_matches_reference(kind, masked, rng):
    fn, term = G_REFS[kind]
    fake = _logits(rng)
    masks = _masks() if masked else [None, None]
    loss, metrics = fn([f.astype(np.float32) for f in fake], masks=masks if masked else None)
    per_d = [_mean(term(f), m) for f, m in zip(fake, masks, strict=True)]
    assert_close(loss, sum(per_d))
    for i, v in enumerate(per_d):
        assert_close(metrics[f"d{i}/gen_loss"], v)
    assert set(metrics) == {"loss", "d0/gen_loss", "d1/gen_loss", "d0/fake_logit_mean",
                            "d1/fake_logit_mean"}


@pytest.mark.parametrize("kind", D_REFS)
def test_padding_contents_and_single_array(kind, rng):
    d_fn, _, _ = D_REFS[kind]
    g_fn, _ = G_REFS[kind]
    real, fake = _logits(rng), _logits(rng)
    masks = _masks()
    base_d, base_g = d_fn(real, fake, masks=masks)[0], g_fn(fake, masks=masks)[0]
    junk_real = [np.where(masks[0], real[0], np.nan), real[1]]
    junk_fake = [np.where(masks[0], fake[0], np.inf), fake[1]]
    assert_close(d_fn(junk_real, junk_fake, masks=masks)[0], base_d, 1e-6)
    assert_close(g_fn(junk_fake, masks=masks)[0], base_g, 1e-6)
    g = jax.grad(lambda f: g_fn([f, fake[1]], masks=masks)[0])(jnp.asarray(junk_fake[0]))
    assert np.isfinite(g).all() and not np.asarray(g)[~np.broadcast_to(masks[0], g.shape)].any()
    # One discriminator may be passed as a bare array.
    assert_close(d_fn(real[1], fake[1])[0], d_fn([real[1]], [fake[1]])[0], 1e-7)
    with pytest.raises(ValueError, match="masks"):
        d_fn(real, fake, masks=[None])
    with pytest.raises(ValueError, match="fake"):
        d_fn(real, fake[:1])


@pytest.mark.parametrize("kind", D_REFS)
def test_jit_grad_bf16(kind, rng):
    d_fn, real_term, fake_term = D_REFS[kind]
    g_fn, _ = G_REFS[kind]
    real = [jnp.asarray(x, jnp.float32) for x in _logits(rng)]
    fake = [jnp.asarray(x, jnp.float32) for x in _logits(rng)]
    assert_close(jax.jit(d_fn)(real, fake)[0], d_fn(real, fake)[0], 1e-6)
    assert_close(jax.jit(g_fn)(fake)[0], g_fn(fake)[0], 1e-6)
    grads = jax.grad(lambda r, f: d_fn(r, f)[0] + g_fn(f)[0], argnums=(0, 1))(real, fake)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    # Hinge kinks at |logit| = 1: finite there too.
    ones = [jnp.ones_like(x) for x in real]
    kink = jax.grad(lambda r, f: d_fn(r, f)[0], argnums=(0, 1))(ones, [-o for o in ones])
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(kink))
    rb, fb = [x.astype(jnp.bfloat16) for x in real], [x.astype(jnp.bfloat16) for x in fake]
    loss_b = d_fn(rb, fb)[0]
    assert loss_b.dtype == jnp.float32 and g_fn(fb)[0].dtype == jnp.float32
    ref = sum(real_term(np.asarray(r, np.float64)).mean() + fake_term(np.asarray(f, np.float64))
              .mean() for r, f in zip(rb, fb, strict=True))
    assert_close(loss_b, ref)


def _feats(rng):
    return [[rng.normal(size=(2, 8, 4)), rng.normal(size=(2, 4, 8))],
            [rng.normal(size=(2, 16, 2)), rng.normal(size=(2, 8, 2)), rng.normal(size=(2, 3))]]


def test_feature_matching_matches_reference(rng):
    real, fake = _feats(rng), _feats(rng)
    loss, metrics = feature_matching_loss(real, fake)
    per_d = [sum(np.abs(f - r).mean() for r, f in zip(rd, fd, strict=True))
             for rd, fd in zip(real, fake, strict=True)]
    assert_close(loss, sum(per_d))  # DAC: sum over discriminators and layers of mean L1
    assert_close(metrics["d0/feature_l1"], per_d[0])
    assert_close(metrics["d1/feature_l1"], per_d[1])
    assert set(metrics) == {"loss", "d0/feature_l1", "d1/feature_l1"}
    assert_close(jax.jit(feature_matching_loss)(real, fake)[0], loss, 1e-6)
    with pytest.raises(ValueError, match="map"):
        feature_matching_loss(real, [[fake[0][0], fake[0][0]], fake[1]])


def test_feature_matching_gradients(rng):
    real = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), _feats(rng))
    fake = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), _feats(rng))
    g_real, g_fake = jax.grad(lambda r, f: feature_matching_loss(r, f)[0], argnums=(0, 1))(
        real, fake)
    # Real features are constants; the fake ones get sign(f - r) / size.
    assert not any(np.asarray(g).any() for g in jax.tree_util.tree_leaves(g_real))
    for gf, f, r in zip(jax.tree_util.tree_leaves(g_fake), jax.tree_util.tree_leaves(fake),
                        jax.tree_util.tree_leaves(real), strict=True):
        assert_close(gf, np.sign(np.asarray(f) - np.asarray(r)) / f.size)
    g_equal = jax.grad(lambda f: feature_matching_loss(real, f)[0])(real)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(g_equal))
    fb = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), fake)
    assert feature_matching_loss(real, fb)[0].dtype == jnp.float32


def test_feature_matching_masks_drop_padded_positions(rng):
    real, fake = _feats(rng), _feats(rng)
    # Left padding along axis 1; map masks broadcast over the channels (None: all valid).
    starts = np.array([3, 0])

    def mask(shape):
        return (np.arange(shape[1])[None, :] >= (starts * shape[1] // 16)[:, None])[..., None]

    masks = [[mask(f.shape) for f in fd] for fd in fake[:1]] + [[None, mask((2, 8)), None]]
    loss, metrics = feature_matching_loss(real, fake, masks=masks)
    per_d = [sum(_mean(np.abs(f - r), m) for r, f, m in zip(rd, fd, md, strict=True))
             for rd, fd, md in zip(real, fake, masks, strict=True)]
    assert_close(loss, sum(per_d))
    assert_close(metrics["d1/feature_l1"], per_d[1])
    # What the padded positions hold (even NaN) changes neither the loss nor the gradient.
    junk = [[np.where(np.broadcast_to(m, f.shape) if m is not None else True, f, np.nan)
             for f, m in zip(fd, md, strict=True)] for fd, md in zip(fake, masks, strict=True)]
    f32 = lambda t: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), t)
    grad = jax.grad(lambda f: feature_matching_loss(f32(real), f, masks=masks)[0])
    assert_close(feature_matching_loss(real, junk, masks=masks)[0], loss)
    for g, gj, m in zip(jax.tree_util.tree_leaves(grad(f32(fake))),
                        jax.tree_util.tree_leaves(grad(f32(junk))),
                        [m for md in masks for m in md], strict=True):
        assert np.isfinite(np.asarray(gj)).all()
        assert_close(gj, g)
        if m is not None:
            assert not np.asarray(g)[~np.broadcast_to(m, g.shape)].any()
    with pytest.raises(ValueError, match="masks"):
        feature_matching_loss(real, fake, masks=masks[:1])
    with pytest.raises(ValueError, match="masks"):
        feature_matching_loss(real, fake, masks=[masks[0], masks[1][:2]])
