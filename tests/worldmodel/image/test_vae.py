"""The image VAE: latent diffusion's layout (levels, widths, the latent grid), logical
axes, jit and gradients in one compiled program, the posterior's sampling and clamp,
the loss terms against closed forms, config errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn.conv import upsample_nearest
from tests.helpers import assert_close, assert_params_have_axes
from worldmodel.image.vae.config import (
    ImageVaeConfig,
    ImageVaeLossConfig,
    ImageVaeModelConfig,
    tiny,
)
from worldmodel.image.vae.loss import image_vae_loss, kl_weight, psnr
from worldmodel.image.vae.model import ImageVae, ImageVaeOutput

CFG = ImageVaeModelConfig.tiny()  # 16 wide, mult (1, 2, 2), one block per level: f = 4


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_layout_axes_jit_and_grad():
    vae = ImageVae(CFG, rngs=nnx.Rngs(0))
    assert_params_have_axes(vae)
    enc, dec = vae.encoder, vae.decoder
    assert [len(level) for level in enc.blocks] == [1, 1, 1]
    assert [len(level) for level in dec.blocks] == [2, 2, 2]  # one more per level
    assert [d.stride for d in enc.downs] == [(2, 2), (2, 2)] and len(dec.ups) == 2
    assert enc.conv_out.kernel.shape[-1] == 2 * CFG.latent_channels
    assert enc.middle.attn is not None and CFG.downsample == 4
    x = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 16, 16, 3)))

    @nnx.jit
    def run(vae, x):
        def loss(vae):
            out = vae(x, key=jax.random.key(1))
            return image_vae_loss(out, x, jnp.int32(5), ImageVaeLossConfig(ssim_weight=0.1))
        (value, metrics), grads = nnx.value_and_grad(loss, has_aux=True)(vae)
        return vae(x), value, metrics, grads, vae.encode(x)

    out, value, metrics, grads, (mean, _) = run(vae, x)
    assert out.image.shape == x.shape and out.image.dtype == jnp.float32
    assert out.mean.shape == out.logvar.shape == (2, 4, 4, CFG.latent_channels)
    assert_close(out.mean, mean, 1e-6)  # no key: the posterior's mean is decoded
    assert np.isfinite(float(value)) and -1 <= float(metrics["vae/ssim"]) <= 1
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    # every parameter the loss reaches gets a gradient (attention included)
    assert all(float(jnp.abs(g).sum()) > 0 for g in leaves)


def test_logvar_is_clamped_and_upsampling_repeats():
    cfg = dataclasses.replace(CFG, logvar_min=-1.0, logvar_max=0.5, attention=False)
    vae = ImageVae(cfg, rngs=nnx.Rngs(0))
    bias = vae.encoder.quant_conv.bias
    bias[...] = bias[...].at[cfg.latent_channels:].set(100.0)  # logvar far above the max
    _, logvar = jax.jit(lambda x: vae.encode(x))(jnp.zeros((1, 8, 8, 3)))
    np.testing.assert_array_equal(logvar, 0.5)
    x = jnp.arange(8.0).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(upsample_nearest(x)[0, :, :, 0],
                                  [[0, 0, 2, 2], [0, 0, 2, 2], [4, 4, 6, 6], [4, 4, 6, 6]])


def test_loss_terms_against_closed_forms():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    pred = (image + 0.1 * rng.normal(size=image.shape)).astype(np.float32)
    mean = rng.normal(size=(2, 2, 2, 4)).astype(np.float32)
    logvar = rng.normal(size=(2, 2, 2, 4)).astype(np.float32)
    cfg = ImageVaeLossConfig(l1_weight=1.0, l2_weight=0.5, kl_weight=0.01, kl_warmup_steps=10)
    loss, m = image_vae_loss(ImageVaeOutput(jnp.asarray(pred), mean, logvar), image,
                             jnp.int32(4), cfg)
    l1 = np.abs(pred - image).mean()
    l2 = np.square(pred - image).mean()
    # KL(N(m, e^lv) || N(0, 1)), summed over channels, mean over latent positions
    kl = (0.5 * (np.exp(logvar) - 1 - logvar + mean ** 2)).sum(-1).mean()
    assert_close(m["vae/l1"], l1)
    assert_close(m["vae/kl"], kl)
    assert_close(m["vae/kl_weight"], 0.004)
    assert_close(loss, l1 + 0.5 * l2 + 0.004 * kl)
    mse = np.square(np.clip(pred, -1, 1) - image).mean(axis=(1, 2, 3))
    assert_close(psnr(jnp.asarray(pred), image), 10 * np.log10(4.0 / mse))
    assert float(kl_weight(jnp.int32(50), cfg)) == pytest.approx(0.01)
    assert float(kl_weight(jnp.int32(0), ImageVaeLossConfig(kl_weight=0.3))) == \
        pytest.approx(0.3)


def test_config_errors():
    with pytest.raises(ValueError, match="groups=8 must divide"):
        ImageVaeModelConfig(channels=12, groups=8)
    with pytest.raises(ValueError, match="multiple of the VAE's downsampling"):
        cfg = tiny()
        dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, train=dataclasses.replace(cfg.data.train, size=30)))
    with pytest.raises(ValueError, match=r"disc\.in_channels"):
        dataclasses.replace(tiny(), model=dataclasses.replace(CFG, in_channels=1))
    with pytest.raises(ValueError, match=r"loss\.kl_weight"):
        ImageVaeLossConfig(kl_weight=-1.0)
    assert isinstance(tiny(), ImageVaeConfig)
