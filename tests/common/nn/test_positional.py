import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn.positional import RoPEConfig, alibi_bias, alibi_slopes, apply_rope
from tests.common.nn.np_reference import rope_complex
from tests.helpers import assert_close


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25])
def test_rope_matches_complex_reference(rng, interleaved, fraction):
    x = rng.standard_normal((2, 7, 3, 16)).astype(np.float32)
    pos = rng.uniform(0, 500, (2, 7)).astype(np.float32)  # fractional positions
    cfg = RoPEConfig(base=10_000.0, fraction=fraction, interleaved=interleaved)
    ours = apply_rope(jnp.asarray(x), jnp.asarray(pos), cfg)
    ref = rope_complex(x, pos, 10_000.0, cfg.rotary_dim(16), interleaved)
    assert ours.shape == x.shape and ours.dtype == jnp.float32
    assert_close(ours, ref, 1e-5)
    # Partial rotary leaves the pass-through dims bit-identical.
    rot = cfg.rotary_dim(16)
    np.testing.assert_array_equal(np.asarray(ours)[..., rot:], x[..., rot:])


@pytest.mark.parametrize("shift", [0.0, 3.0, 117.25])
def test_rope_scores_depend_only_on_relative_position(rng, shift):
    q = jnp.asarray(rng.standard_normal((1, 1, 1, 32)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((1, 1, 1, 32)), jnp.float32)
    cfg = RoPEConfig(base=100.0)

    def score(m, n):
        qm = apply_rope(q, jnp.array([[m]]), cfg)
        kn = apply_rope(k, jnp.array([[n]]), cfg)
        return float(jnp.sum(qm * kn))

    base = score(10.5, 4.0)
    np.testing.assert_allclose(score(10.5 + shift, 4.0 + shift), base, rtol=1e-5, atol=1e-5)
    # ... and does depend on the relative offset (the property is not vacuous).
    assert abs(score(10.5, 5.0) - base) > 1e-3


def test_rope_identity_at_zero_and_norm_preserving(rng):
    x = jnp.asarray(rng.standard_normal((2, 5, 2, 8)), jnp.float32)
    np.testing.assert_allclose(apply_rope(x, jnp.zeros((2, 5))), x, atol=1e-7)
    y = apply_rope(x, jnp.arange(5.0) * 13)
    np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1),
                               rtol=1e-5)


def test_rope_bf16_keeps_dtype_and_jits(rng):
    x = jnp.asarray(rng.standard_normal((1, 4, 2, 8)), jnp.bfloat16)
    y = jax.jit(apply_rope, static_argnums=2)(x, jnp.arange(4), RoPEConfig())
    assert y.dtype == jnp.bfloat16
    ref = apply_rope(x.astype(jnp.float32), jnp.arange(4))
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=3e-2)


def test_rope_config_validation():
    with pytest.raises(ValueError, match="fraction"):
        RoPEConfig(fraction=0.0)
    with pytest.raises(ValueError, match="no rotary dims"):
        RoPEConfig(fraction=0.1).rotary_dim(8)


def test_alibi_slopes_follow_the_paper():
    np.testing.assert_allclose(alibi_slopes(8), 2.0 ** -np.arange(1, 9), rtol=1e-6)
    # Non-power-of-two: slopes of 4 heads, then every other slope of 8 heads.
    expected = [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
    np.testing.assert_allclose(alibi_slopes(6), expected, rtol=1e-6)


def test_alibi_bias_is_linear_in_distance():
    bias = alibi_bias(jnp.arange(4.0), jnp.arange(4.0), 2)
    assert bias.shape == (1, 2, 4, 4)
    dist = np.abs(np.arange(4)[:, None] - np.arange(4)[None, :])
    np.testing.assert_allclose(bias[0, 0], -0.0625 * dist, rtol=1e-6)
    np.testing.assert_allclose(bias[0, 1], -(0.0625**2) * dist, rtol=1e-6)
