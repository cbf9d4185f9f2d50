"""Multi-resolution STFT magnitudes: shapes, masks, and equality with single resolutions."""

import chex
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from common.audio import (
    DEFAULT_RESOLUTIONS,
    STFTConfig,
    frame_mask,
    geometric_resolutions,
    magnitude,
    multi_resolution_magnitudes,
    num_frames,
    stft,
)

# Jitted once per static configuration: on CPU much faster than eager dispatch.
jstft = jax.jit(stft, static_argnames=("n_fft", "hop_length", "win_length"))
jmag = jax.jit(magnitude, static_argnames=("power", "eps"))
SMALL = (STFTConfig(256, 64), STFTConfig(128, 32, 100), STFTConfig(64, 16))


def test_resolution_sets():
    assert geometric_resolutions(3, 2048) == DEFAULT_RESOLUTIONS
    assert [(c.n_fft, c.hop_length) for c in DEFAULT_RESOLUTIONS] == [
        (2048, 512), (1024, 256), (512, 128)
    ]
    assert geometric_resolutions(2, 1200, factor=2, overlap=4) == (
        STFTConfig(1200, 300), STFTConfig(600, 150)
    )
    assert STFTConfig(128, 32, 100).win == 100 and STFTConfig(128, 32).win == 128
    hash(DEFAULT_RESOLUTIONS)  # static-argument friendly
    with pytest.raises(ValueError, match="win_length"):
        STFTConfig(128, 32, 200)
    with pytest.raises(ValueError, match="overlap"):
        geometric_resolutions(3, 1000, overlap=4)


def test_shapes_and_single_resolution_parity(rng):
    shape = (2, 2)  # [B, C, N] (test_stft covers batching itself)
    x = jnp.asarray(rng.uniform(-1.0, 1.0, (*shape, 3000)), jnp.float32)
    out = jax.jit(multi_resolution_magnitudes, static_argnums=1)(x, SMALL)
    assert len(out) == len(SMALL)
    for cfg, (mag, mask) in zip(SMALL, out, strict=True):
        frames = num_frames(3000, cfg.n_fft, cfg.hop_length)
        chex.assert_shape(mag, (*shape, frames, cfg.n_fft // 2 + 1))
        chex.assert_shape(mask, (*shape, frames))
        chex.assert_type(mag, jnp.float32)
        assert bool(mask.all())
        single = jmag(jstft(x, cfg.n_fft, cfg.hop_length, cfg.win))
        np.testing.assert_allclose(mag, single, rtol=1e-6, atol=1e-5)
        ref = np.abs(librosa.stft(np.asarray(x, np.float64), n_fft=cfg.n_fft,
                                  hop_length=cfg.hop_length, win_length=cfg.win))
        ref = np.swapaxes(ref, -1, -2)  # "1e-4 relative" criterion, as in test_stft
        np.testing.assert_allclose(mag, ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_default_resolutions_shapes():
    x = jax.ShapeDtypeStruct((2, 8000), jnp.float32)
    out = jax.eval_shape(multi_resolution_magnitudes, x)  # shapes only: nothing computed
    for cfg, (mag, mask) in zip(DEFAULT_RESOLUTIONS, out, strict=True):
        frames = 1 + 8000 // cfg.hop_length
        assert mag.shape == (2, frames, cfg.n_fft // 2 + 1) and mag.dtype == jnp.float32
        assert mask.shape == (2, frames) and mask.dtype == jnp.bool_


@pytest.mark.parametrize("side", ["right", "left"])
def test_masks_follow_lengths(side, rng):
    x = jnp.asarray(rng.uniform(-1.0, 1.0, (3, 2000)), jnp.float32)
    lengths = jnp.array([2000, 1234, 300])
    f = jax.jit(multi_resolution_magnitudes, static_argnames=("resolutions", "power",
                                                             "padding_side"))
    out = f(x, SMALL, power=2.0, lengths=lengths, padding_side=side)
    for cfg, (mag, mask) in zip(SMALL, out, strict=True):
        expected = frame_mask(lengths, 2000, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                              padding_side=side)
        np.testing.assert_array_equal(mask, expected)
        assert not bool(mask.all()) and bool(mask.any(-1).all())
        np.testing.assert_array_equal(np.asarray(mag)[~np.asarray(mask)], 0.0)
        full = jmag(jstft(x, cfg.n_fft, cfg.hop_length, cfg.win), power=2.0)
        np.testing.assert_allclose(np.asarray(mag)[np.asarray(mask)],
                                   np.asarray(full)[np.asarray(mask)], rtol=1e-6)


def test_grad_finite_including_silence(rng):
    def loss(x):
        feats = multi_resolution_magnitudes(x, SMALL)
        return sum(jnp.mean(jnp.log(jnp.maximum(m, 1e-5))) + jnp.mean(m) for m, _ in feats)

    grad = jax.jit(jax.grad(loss))
    for x in (np.zeros((2, 2000)), rng.uniform(-1.0, 1.0, (2, 2000))):
        g = np.asarray(grad(jnp.asarray(x, jnp.float32)))
        assert np.isfinite(g).all()
    assert np.abs(g).max() > 0
