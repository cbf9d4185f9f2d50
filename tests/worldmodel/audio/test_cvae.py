"""The audio CVAE's model and loss: shapes, jit and grad, left padding, FiLM identity
at initialisation, the frame grids, F0 features, the clamp and the KL warm-up."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_params_have_axes
from worldmodel.audio.cvae.config import CvaeLossConfig, CvaeModelConfig
from worldmodel.audio.cvae.loss import cvae_loss, kl_weight
from worldmodel.audio.cvae.model import AudioCvae, f0_features, upsample_frames

CFG = dataclasses.replace(CvaeModelConfig.tiny(content_dim=12, speaker_dim=6), n_mels=16)
T, T4 = 33, 9  # 4k + 1 mel frames, k + 1 latent frames


def _inputs(rng, b=2, t=T):
    t4 = (t + 3) // 4
    f0 = rng.uniform(80, 300, (b, t)).astype(np.float32)
    return dict(mel=jnp.asarray(rng.standard_normal((b, t, 16)), jnp.float32),
                valid=jnp.ones((b, t), bool),
                content=jnp.asarray(rng.standard_normal((b, t4, 12)), jnp.float32),
                speaker=jnp.asarray(rng.standard_normal((b, 6)), jnp.float32),
                f0=jnp.asarray(f0), voiced=jnp.asarray(rng.uniform(size=(b, t)) > 0.3))


def test_shapes_axes_jit_and_grad():
    rng = np.random.default_rng(0)
    model = AudioCvae(CFG, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    x = _inputs(rng)
    out = model(**x, key=jax.random.key(1))
    assert out.mel.shape == (2, T, 16) and out.mean.shape == (2, T4, 8)
    assert out.latent_valid.shape == (2, T4) and bool(out.latent_valid.all())

    graphdef, params = nnx.split(model)

    @jax.jit
    def loss(params, x, step):
        m = nnx.merge(graphdef, params)
        return cvae_loss(m(**x, key=jax.random.key(2)), x["mel"], x["valid"], step,
                         CvaeLossConfig(kl_warmup_steps=10))[0]

    grads = jax.grad(loss)(params, x, 5)
    norms = [float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) >= len(norms) - 4


def test_speaker_has_no_effect_at_init_then_does():
    """FiLM starts as the identity: at initialisation the speaker embedding changes
    nothing; once FiLM's last layer moves, it does."""
    rng = np.random.default_rng(1)
    model = AudioCvae(CFG, rngs=nnx.Rngs(0))
    x = _inputs(rng)
    other = dict(x, speaker=x["speaker"][::-1] * 3.0)
    np.testing.assert_array_equal(model(**x).mel, model(**other).mel)
    block = model.blocks[0]
    block.film.proj.kernel[...] = jnp.full_like(block.film.proj.kernel[...], 0.1)
    assert float(jnp.abs(model(**x).mel - model(**other).mel).max()) > 1e-3


def test_left_padded_row_equals_its_unpadded_self():
    """Padding by a multiple of 4 mel frames keeps the frame grid: the valid frames of
    the reconstruction and the posterior match; padding contents do not leak."""
    rng = np.random.default_rng(2)
    model = AudioCvae(CFG, rngs=nnx.Rngs(0))
    x = _inputs(rng, b=1)
    pad, pad4 = 8, 2
    padded = {k: (jnp.concatenate([jnp.full((1, pad4, *v.shape[2:]), 7.0, v.dtype), v], 1)
                  if k == "content" else
                  jnp.concatenate([jnp.full((1, pad, *v.shape[2:]), 5, v.dtype), v], 1)
                  if k != "speaker" else v) for k, v in x.items()}
    padded["valid"] = jnp.concatenate([jnp.zeros((1, pad), bool), x["valid"]], 1)
    a, b = model(**x), model(**padded)
    np.testing.assert_allclose(b.mel[:, pad:], a.mel, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.mean[:, pad4:], a.mean, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(b.mel[:, :pad]).max()) == 0.0
    assert not bool(b.latent_valid[0, :pad4].any())


def test_frame_grid_f0_features_and_clamp():
    x = jnp.arange(3)[None, :, None].astype(jnp.float32)  # latent frames 0, 1, 2
    np.testing.assert_array_equal(upsample_frames(x, 9)[0, :, 0],
                                  [0, 0, 1, 1, 1, 1, 2, 2, 2])
    f0 = jnp.array([[100.0, 200.0, 0.0, 400.0]])
    voiced = jnp.array([[True, True, False, True]])
    feats = np.asarray(f0_features(f0, voiced))[0]
    mean = np.mean(np.log([100.0, 200.0, 400.0]))
    np.testing.assert_allclose(feats[:, 0], [np.log(100) - mean, np.log(200) - mean, 0.0,
                                             np.log(400) - mean], rtol=1e-6)
    np.testing.assert_array_equal(feats[:, 1], [1, 1, 0, 1])
    model = AudioCvae(dataclasses.replace(CFG, logvar_min=-1.0, logvar_max=0.5),
                      rngs=nnx.Rngs(0))
    model.stats.bias[...] = model.stats.bias[...].at[1].set(100.0)
    _, logvar, _ = model.encode(_inputs(np.random.default_rng(3))["mel"],
                                jnp.ones((2, T), bool))
    assert float(logvar.max()) == 0.5


def test_loss_terms_and_kl_warmup():
    cfg = CvaeLossConfig(l1_weight=1.0, l2_weight=0.5, kl_weight=0.2, kl_warmup_steps=4)
    np.testing.assert_allclose([float(kl_weight(s, cfg)) for s in (0, 2, 4, 9)],
                               [0.0, 0.1, 0.2, 0.2])
    rng = np.random.default_rng(4)
    model = AudioCvae(CFG, rngs=nnx.Rngs(0))
    x = _inputs(rng)
    x["valid"] = x["valid"].at[0, :8].set(False)
    out = model(**x)
    loss, m = cvae_loss(out, x["mel"], x["valid"], 2, cfg)
    v = np.asarray(x["valid"])[..., None]
    diff = np.where(v, np.asarray(out.mel) - np.asarray(x["mel"]), 0.0)
    n = v.sum() * 16
    l1, l2 = np.abs(diff).sum() / n, np.square(diff).sum() / n
    lv = np.asarray(out.latent_valid)[..., None]
    mu, lvar = np.asarray(out.mean, np.float64), np.asarray(out.logvar, np.float64)
    kl = np.where(lv, 0.5 * (np.exp(lvar) - 1 - lvar + mu ** 2), 0.0).sum() / lv.sum()
    np.testing.assert_allclose([float(m["cvae/mel_l1"]), float(m["cvae/mel_l2"]),
                                float(m["cvae/kl"])], [l1, l2, kl], rtol=1e-5)
    np.testing.assert_allclose(float(loss), l1 + 0.5 * l2 + 0.1 * kl, rtol=1e-5)


def test_decode_checks_frame_counts():
    model = AudioCvae(CFG, rngs=nnx.Rngs(0))
    x = _inputs(np.random.default_rng(5))
    with pytest.raises(ValueError, match="need 9 latent and content frames"):
        model.decode(jnp.zeros((2, 8, 8)), x["content"], x["valid"], x["speaker"],
                     x["f0"], x["voiced"])
