"""The recurrent VAE: one cell for every step (a longer run extends a shorter one), the
zero correction at initialisation, jit and gradients, the loss as the mean of the image
VAE's loss over steps, and early exit per image against the fixed-step estimates."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from worldmodel.image.recurrent_vae.config import RecurrentVaeModelConfig, tiny
from worldmodel.image.recurrent_vae.model import RecurrentImageVae
from worldmodel.image.recurrent_vae.training import recurrent_loss
from worldmodel.image.vae.config import ImageVaeModelConfig
from worldmodel.image.vae.loss import image_vae_loss
from worldmodel.image.vae.model import ImageVaeOutput

CFG = RecurrentVaeModelConfig(vae=dataclasses.replace(ImageVaeModelConfig.tiny(),
                                                       attention=False), steps=3)


def _model(seed=0, perturb=True):
    model = RecurrentImageVae(CFG, rngs=nnx.Rngs(seed))
    if perturb:  # the zero-initialised last conv would make every step a no-op
        k = model.cell.conv_out.kernel
        k[...] = 0.05 * jax.random.normal(jax.random.key(seed + 1), k[...].shape)
    return model


def _images(n=3, size=16):
    return jnp.tanh(jax.random.normal(jax.random.key(7), (n, size, size, 3)))


def test_zero_at_init_and_shared_cell():
    model = _model(perturb=False)
    assert_params_have_axes(model)
    assert model.decoder.norm_out is None and model.decoder.conv_out is None
    z = model.encode(_images())[0]
    assert np.all(np.asarray(model.decode_steps(z)) == 0)  # x_k = 0 + 0 + ...
    model = _model()
    xs3, xs5 = model.decode_steps(z), model.decode_steps(z, 5)
    assert xs3.shape == (3, 3, 16, 16, 3) and xs5.shape[0] == 5
    assert_close(xs5[:3], xs3, 1e-6)  # the same cell at every step
    # each step adds the cell's correction of the previous estimate
    h = model.decoder.features(z)
    assert_close(xs3[1], xs3[0] + model.cell(h, xs3[0]), 1e-5)


def test_jit_grad_and_loss_is_the_mean_over_steps():
    model, x = _model(), _images(2)
    cfg = tiny()

    @nnx.jit
    def run(model):
        def loss(model):
            out = model(x, key=jax.random.key(1))
            return recurrent_loss(out.images, out.mean, out.logvar, x, jnp.int32(50), cfg)
        (value, metrics), grads = nnx.value_and_grad(loss, has_aux=True)(model)
        return value, metrics, grads, model(x, key=jax.random.key(1))

    value, metrics, grads, out = run(model)
    want = np.mean([float(image_vae_loss(ImageVaeOutput(out.images[k], out.mean, out.logvar),
                                         x, jnp.int32(50), cfg.loss)[0]) for k in range(3)])
    assert float(value) == pytest.approx(want, rel=1e-5)
    assert "vae/psnr_first" in metrics and "vae/psnr" in metrics
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.cell.conv_in.kernel[...]).sum()) > 0


def test_early_exit_per_image():
    model = _model()
    z = model.encode(_images(4))[0]
    xs = np.asarray(model.decode_steps(z, 6))
    prev = np.concatenate([np.zeros_like(xs[:1]), xs[:-1]])
    change = np.abs(xs - prev).mean(axis=(2, 3, 4))  # [6, B]
    adaptive = nnx.jit(lambda m, z, t: m.decode_adaptive(z, t, 6))
    # threshold infinite: one step; zero: every step
    x, used = adaptive(model, z, jnp.float32(np.inf))
    assert np.all(np.asarray(used) == 1)
    assert_close(x, xs[0], 1e-6)
    x, used = adaptive(model, z, jnp.float32(0.0))
    assert np.all(np.asarray(used) == 6)
    assert_close(x, xs[5], 1e-6)
    # a threshold between: each image stops at its own first step below it
    t = float(np.median(change[1:]))
    below = change < t
    want = np.where(below.any(0), below.argmax(0) + 1, 6)
    assert len(set(want.tolist())) > 1  # the images stop at different steps
    x, used = adaptive(model, z, jnp.float32(t))
    np.testing.assert_array_equal(np.asarray(used), want)
    for b, k in enumerate(want):
        assert_close(x[b], xs[k - 1, b], 1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        RecurrentVaeModelConfig(steps=0)
    with pytest.raises(ValueError, match=r"multiple of vae\.groups"):
        dataclasses.replace(CFG, cell_channels=12)
    assert CFG.width == 16 and CFG.inference_steps == 3
