"""BSQ's entropy penalty against a numpy transcription of the BSQ-ViT reference code
(zhaoyue-zephyrus/bsq-vit, ``transcoder/models/quantizer/bsq.py``,
``BinarySphericalQuantizer.soft_entropy_loss`` and the loss in ``forward``), so that
``inv_temperature``, ``gamma`` and the group factorisation mean what they mean there."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close
from tokenizer.alpha.components.quantizers.bsq import BinarySphericalQuantizer
from tokenizer.alpha.components.quantizers.vq import unit_norm


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _get_entropy(probs):
    """The reference's ``get_entropy(..., normalize=False)``."""
    return -(probs * np.log(probs + 1e-8)).sum(-1)


def reference_entropies(z, *, group_size, inv_temperature, gamma, analytical=False):
    """``soft_entropy_loss`` with ``l2_norm=True`` (codes scaled by 1/sqrt(L)), on ``z
    [N, L]`` already l2-normalised (``VITBSQModel.encode`` normalises before the
    quantizer); returns (per-sample entropy, codebook entropy, the entropy part of the
    loss with gamma0 = zeta = 1: ``(gamma0 * ps - gamma * cb) / inv_temperature``)."""
    n_bits = z.shape[-1]
    basis = 2 ** np.arange(n_bits - 1, -1, -1)
    # indexes_to_codes(arange(2^g))[:, -g:]: every sign pattern of one group
    codes = (np.arange(2**group_size)[:, None] // basis) % 2 * 2 - 1
    group_codebook = codes[:, -group_size:] / np.sqrt(n_bits)
    divided = z.reshape(*z.shape[:-1], n_bits // group_size, group_size)
    distance = -2 * np.einsum("...gc,dc->...gd", divided, group_codebook)
    prob = _softmax(-distance * inv_temperature)
    if analytical:
        p = 1 / (1 + np.exp(4 * z / np.sqrt(n_bits) * inv_temperature))  # sigmoid(-4 z ...)
        per_sample = _get_entropy(np.stack([p, 1 - p], -1)).sum(-1).mean()
    else:
        per_sample = _get_entropy(prob).sum(-1).mean()
    avg_prob = prob.reshape(-1, *prob.shape[-2:]).mean(0)
    codebook = _get_entropy(avg_prob).sum()
    return per_sample, codebook, (per_sample - gamma * codebook) / inv_temperature


@pytest.mark.parametrize("bits,group,tau,gamma", [
    (8, 4, 1.0, 1.0),  # the fast subset keeps one case; CI runs them all
    *(pytest.param(*c, marks=pytest.mark.slow)
      for c in [(6, 3, 2.5, 0.5), (4, 2, 0.3, 1.0), (6, 6, 1.0, 2.0)])])
def test_entropy_matches_bsq_vit(bits, group, tau, gamma):
    q = BinarySphericalQuantizer(12, bits, group_size=group, gamma=gamma,
                                 inv_temperature=tau, rngs=nnx.Rngs(0))
    z = np.random.default_rng(1).normal(size=(2, 40, 12)).astype(np.float32)
    valid = np.arange(40)[None, :] >= np.array([0, 15])[:, None]  # left padding
    out = q(jnp.asarray(z), jnp.asarray(valid))
    u = np.asarray(unit_norm(q.in_proj(jnp.asarray(z))), np.float64)[valid]  # valid frames
    ps, cb, loss = reference_entropies(u, group_size=group, inv_temperature=tau, gamma=gamma)
    ps_analytical, _, _ = reference_entropies(u, group_size=group, inv_temperature=tau,
                                              gamma=gamma, analytical=True)
    assert_close(ps_analytical, ps, 1e-5)  # the reference's two forms agree
    assert_close(out.metrics["sample_entropy"], ps, 1e-5)
    assert_close(out.metrics["codebook_entropy"], cb, 1e-5)
    assert_close(out.losses["entropy"], loss, 1e-5)


def test_temperature_scale_whatever_the_number_of_bits():
    """``inv_temperature`` is the reference's: one coordinate's probability is
    ``sigmoid(4 tau u_d / sqrt(L))``, so at a fixed tau a unit vector's bits get softer as
    L grows (the old parameterisation, ``sigmoid(2 tau sqrt(L) u_d)``, was the
    reference's ``tau * L / 2``)."""
    for bits in (4, 16):
        q = BinarySphericalQuantizer(bits, bits, group_size=bits // 2, inv_temperature=1.0,
                                     rngs=nnx.Rngs(0))
        u = jnp.full((1, 1, bits), 1.0 / np.sqrt(bits))  # every coordinate at 1/sqrt(L)
        sample, _ = q.entropies(u, jnp.ones((1, 1)))
        p = 1 / (1 + np.exp(-4 / bits))
        assert_close(sample, bits * -(p * np.log(p) + (1 - p) * np.log(1 - p)), 1e-5)
    with pytest.raises(ValueError, match="inv_temperature"):
        BinarySphericalQuantizer(8, 8, group_size=4, inv_temperature=0.0, rngs=nnx.Rngs(0))
