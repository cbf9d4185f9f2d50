"""Quantizers against brute-force numpy references, masking, EMA and gradients."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.alpha.components.quantizers.bsq import (
    BinarySphericalQuantizer,
    bits_to_codes,
    codes_to_bits,
)
from tokenizer.alpha.components.quantizers.fsq import FiniteScalarQuantizer
from tokenizer.alpha.components.quantizers.rvq import PhonemeBSQ, ResidualVQ
from tokenizer.alpha.components.quantizers.vq import VectorQuantizer


def _latents(b=3, t=9, d=16, seed=0):
    z = jax.random.normal(jax.random.key(seed), (b, t, d))
    valid = jnp.arange(t)[None] >= jnp.array([0, 2, 5])[:b, None]  # left padding
    return z, valid


def _entropy(p, axis=-1):
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=axis)


ALL = {
    "vq": lambda: VectorQuantizer(16, 32, 8, rngs=nnx.Rngs(0)),
    "vq_ema": lambda: VectorQuantizer(16, 32, 8, ema=True, rngs=nnx.Rngs(0)),
    "bsq": lambda: BinarySphericalQuantizer(16, 8, group_size=4, rngs=nnx.Rngs(0)),
    "fsq": lambda: FiniteScalarQuantizer(16, (8, 5, 5), rngs=nnx.Rngs(0)),
    "rvq": lambda: ResidualVQ(16, 3, 32, 8, rngs=nnx.Rngs(0)),
    "phoneme_bsq": lambda: PhonemeBSQ(16, 12, num_bits=8, group_size=4, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_shapes_decode_and_axes(name):
    q = ALL[name]()
    q.eval()  # no EMA update, so decode sees the codebook the forward used
    z, valid = _latents()
    out = q(z, valid)
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.codes.dtype == jnp.int32 and out.codes.shape[:2] == z.shape[:2]
    codes = out.codes if name in ("rvq", "phoneme_bsq") else out.codes[..., 0]
    assert_close(q.decode_codes(codes), out.quantized, 1e-5)
    for v in (*out.losses.values(), *out.metrics.values()):
        assert v.shape == () and np.isfinite(v)
    assert_params_have_axes(q)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_padded_frames_change_nothing(name):
    q = ALL[name]()
    q.eval()
    z, valid = _latents()
    noise = jax.random.normal(jax.random.key(5), z.shape) * 10
    a = q(z, valid)
    b = q(jnp.where(valid[..., None], z, noise), valid)
    for k in a.losses:
        assert_close(b.losses[k], a.losses[k], 1e-5)
    for k in a.metrics:
        assert_close(b.metrics[k], a.metrics[k], 1e-5)
    assert_close(jnp.where(valid[..., None], b.quantized, 0),
                 jnp.where(valid[..., None], a.quantized, 0), 1e-5)


@pytest.mark.parametrize("name", sorted(ALL))
def test_jit_and_straight_through_gradient(name):
    q = ALL[name]()
    z, valid = _latents()
    graphdef, state = nnx.split(q)

    @jax.jit
    def f(state, z):
        m = nnx.merge(graphdef, state)
        out = m(z, valid, key=jax.random.key(0))
        return jnp.sum(out.quantized) + sum(out.losses.values())

    g = jax.grad(f, argnums=1)(state, z)
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_vq_picks_the_nearest_code_by_cosine():
    q = VectorQuantizer(16, 32, 8, rngs=nnx.Rngs(1))
    z, valid = _latents()
    out = q(z, valid)
    e = np.asarray(q.in_proj(z), np.float64)
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    c = np.asarray(q.codebook[...], np.float64)
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    np.testing.assert_array_equal(out.codes[..., 0], np.argmax(e @ c.T, -1))
    w = np.asarray(valid, np.float64)
    commit = np.sum(np.mean((e - c[out.codes[..., 0]]) ** 2, -1) * w) / w.sum()
    assert_close(out.losses["commitment"], commit, 1e-5)
    assert_close(out.logits, (e @ c.T) * 10.0, 1e-5)
    counts = np.bincount(np.asarray(out.codes[..., 0])[np.asarray(valid)], minlength=32)
    p = counts / counts.sum()
    assert_close(out.metrics["perplexity"], np.exp(_entropy(p)), 1e-5)
    assert_close(out.metrics["usage"], np.mean(counts > 0), 1e-6)


def test_vq_euclidean_without_normalisation():
    q = VectorQuantizer(16, 32, 8, l2_normalize=False, rngs=nnx.Rngs(1))
    z, valid = _latents()
    e = np.asarray(q.in_proj(z), np.float64)
    c = np.asarray(q.codebook[...], np.float64)
    d = ((e[..., None, :] - c) ** 2).sum(-1)
    np.testing.assert_array_equal(q(z, valid).codes[..., 0], np.argmin(d, -1))


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_vq_ema_update_and_dead_code_restart():
    q = VectorQuantizer(16, 32, 8, ema=True, decay=0.9, dead_code_threshold=0.95,
                        rngs=nnx.Rngs(2))
    z, valid = _latents()
    size0 = np.asarray(q.cluster_size[...], np.float64)
    sum0 = np.asarray(q.embed_sum[...], np.float64)
    table = np.asarray(q.codes_table(), np.float64)
    e = np.asarray(q.project(z), np.float64)
    codes = np.argmax(e @ table.T, -1)
    w = np.asarray(valid, np.float64)
    counts = np.bincount(codes.reshape(-1), weights=w.reshape(-1), minlength=32)
    sums = np.zeros_like(sum0)
    np.add.at(sums, codes.reshape(-1), e.reshape(-1, 8) * w.reshape(-1, 1))
    size = 0.9 * size0 + 0.1 * counts
    embed = 0.9 * sum0 + 0.1 * sums
    q(z, valid, key=jax.random.key(3))
    dead = size < 0.95
    assert dead.any() and (~dead).any()
    assert_close(q.cluster_size[...][~dead], size[~dead], 1e-5)
    assert_close(q.embed_sum[...][~dead], embed[~dead], 1e-5)
    # Dead codes restart at a valid input vector with count 1.
    np.testing.assert_allclose(q.cluster_size[...][dead], 1.0)
    valid_vectors = e[np.asarray(valid)]
    for row in np.asarray(q.embed_sum[...])[dead]:
        assert np.min(np.abs(valid_vectors - row).max(-1)) < 1e-5
    # Eval mode leaves the state alone.
    q.eval()
    before = np.asarray(q.embed_sum[...]).copy()
    q(z, valid, key=jax.random.key(4))
    np.testing.assert_array_equal(q.embed_sum[...], before)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_bsq_codes_norms_and_entropies_against_enumeration():
    bits, group = 4, 2
    q = BinarySphericalQuantizer(8, bits, group_size=group, gamma=0.7, inv_temperature=0.8,
                                 rngs=nnx.Rngs(3))
    z, valid = _latents(d=8)
    out = q(z, valid)
    u = np.asarray(q.in_proj(z), np.float64)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    signs = (u >= 0).astype(int)
    np.testing.assert_array_equal(out.codes[..., 0], signs @ (2 ** np.arange(bits)[::-1]))
    # Soft assignment over all 2^L codes: softmax(2 tau c.u) (BSQ-ViT's logits).
    codes = np.array(list(itertools.product((-1, 1), repeat=bits))) / math.sqrt(bits)
    logits = 2 * 0.8 * u @ codes.T
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    w = np.asarray(valid, np.float64)
    sample = np.sum(_entropy(p) * w) / w.sum()
    # Codebook entropy over groups: marginal distribution of each group's patterns.
    avg = np.einsum("btc,bt->c", p, w) / w.sum()
    avg = avg.reshape(*(2,) * bits)
    groups = [avg.sum(axis=(2, 3)).reshape(-1), avg.sum(axis=(0, 1)).reshape(-1)]
    codebook = sum(_entropy(g) for g in groups)
    assert_close(out.metrics["sample_entropy"], sample, 1e-5)
    assert_close(out.metrics["codebook_entropy"], codebook, 1e-5)
    assert_close(out.losses["entropy"], (sample - 0.7 * codebook) / 0.8, 1e-5)
    qv = (2 * signs - 1) / math.sqrt(bits)
    assert_close(np.linalg.norm(qv, axis=-1), np.ones(qv.shape[:2]), 1e-6)
    commit = np.sum(np.mean((u - qv) ** 2, -1) * w) / w.sum()
    assert_close(out.losses["commitment"], commit, 1e-5)


def test_bsq_bits_roundtrip_and_limits():
    codes = jnp.arange(2**10)
    np.testing.assert_array_equal(bits_to_codes(codes_to_bits(codes, 10)), codes)
    with pytest.raises(ValueError, match="num_bits"):
        BinarySphericalQuantizer(8, 31, group_size=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="group_size"):
        BinarySphericalQuantizer(8, 10, group_size=4, rngs=nnx.Rngs(0))


def test_fsq_grid_and_codes():
    q = FiniteScalarQuantizer(4, (8, 5, 3), rngs=nnx.Rngs(0))
    h = jnp.linspace(-6, 6, 41)[:, None].repeat(3, 1)
    bounded = np.asarray(q.bound(h))
    lo = np.array([-4, -2, -1]) - 0.5
    hi = np.array([3, 2, 1]) + 0.5
    assert np.all(bounded > lo) and np.all(bounded < hi)
    grid = np.round(bounded)
    seen = {tuple(r) for r in grid}
    assert {r[0] for r in seen} == set(range(-4, 4))
    every = np.array(list(itertools.product(range(-4, 4), range(-2, 3), range(-1, 2))))
    codes = q.grid_to_codes(jnp.asarray(every, jnp.float32))
    np.testing.assert_array_equal(codes, np.arange(8 * 5 * 3))
    np.testing.assert_array_equal(q.codes_to_grid(codes), every)


def test_rvq_levels_quantize_residuals_and_dropout_keeps_prefixes():
    q = ResidualVQ(16, 3, 32, 8, dropout=1.0, rngs=nnx.Rngs(4))
    z, valid = _latents()
    q.eval()
    out = q(z, valid)
    residual, total = z, 0
    for i, level in enumerate(q.levels):
        o = level(residual, valid)
        np.testing.assert_array_equal(out.codes[..., i], o.codes[..., 0])
        total = total + o.quantized
        residual = residual - o.quantized
    assert_close(out.quantized, total, 1e-5)
    q.train()
    out = q(z, valid, key=jax.random.key(7))
    # With dropout every example keeps a prefix of n levels: its output is their sum.
    partial = [sum(q.levels[i].decode_codes(out.codes[..., i]) for i in range(n))
               for n in (1, 2, 3)]
    for b in range(z.shape[0]):
        errs = [float(jnp.abs(p[b] - out.quantized[b]).max()) for p in partial]
        assert min(errs) < 1e-5, errs


@pytest.mark.slow
def test_phoneme_stage_logits_train_with_ctc():
    from common.losses.ctc import ctc_loss
    q = PhonemeBSQ(16, 12, num_bits=8, group_size=4, rngs=nnx.Rngs(0))
    z, valid = _latents()
    labels = jnp.array([[3, 4, 5], [1, 2, 0], [7, 0, 0]])
    label_valid = labels > 0

    def loss(model):
        out = model(z, valid)
        return ctc_loss(out.logits, valid, labels, label_valid)[0]

    g = nnx.grad(loss)(q)
    assert float(jnp.abs(g.phoneme.in_proj.kernel[...]).sum()) > 0
    assert float(jnp.abs(g.phoneme.codebook[...]).sum()) > 0
