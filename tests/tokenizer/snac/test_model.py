"""SNAC's shapes, padding contract, parameter counts and gradients (no PyTorch needed).

Everything runs under ``nnx.jit``: op-by-op the tiny model's backward pass takes 40 s on
CPU, compiled 7 s (shape errors are raised while tracing, so they still surface)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tokenizer.snac.config import MODEL_PRESETS, SnacModelConfig
from tokenizer.snac.model import SNAC


def n_params(preset: str) -> int:
    model = nnx.eval_shape(lambda: SNAC(preset, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.slow  # traces the 19.8M and 54.5M parameter models
def test_published_sizes_and_rates():
    assert n_params("24khz") == 19_842_914  # "19.8 M" in the SNAC README
    assert n_params("32khz") == n_params("44khz") == 54_546_338
    m24, m32 = MODEL_PRESETS["24khz"], MODEL_PRESETS["32khz"]
    assert m24.bitrate == pytest.approx(984.375)  # 0.98 kbps
    assert m32.bitrate == pytest.approx(1875.0)  # 1.9 kbps
    assert (m24.pad_multiple, m32.pad_multiple) == (2048, 12288)
    assert m32.code_lengths(32000) == (12, 24, 48, 96)  # the package README's example


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_shapes_padding_and_decode():
    model = SNAC("tiny", rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 3000, 1)), jnp.float32)
    out = nnx.jit(lambda m, w: m(w))(model, x)
    assert out.recon.shape == x.shape and out.recon.dtype == jnp.float32
    assert [c.shape for c in out.codes] == [(2, 2), (2, 4), (2, 8)]
    assert all(c.dtype == jnp.int32 for c in out.codes)
    assert jax.eval_shape(model.decode, out.codes).shape == (2, 4096, 1)
    with pytest.raises(ValueError, match="do not fit the strides"):
        jax.eval_shape(model.decode, [out.codes[0], out.codes[1], out.codes[2][:, :4]])
    with pytest.raises(ValueError, match="mono audio"):
        model(x[..., 0])


@pytest.mark.slow
def test_noise_only_with_a_key_and_gradients_flow():
    model = SNAC("tiny", rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(1).normal(0, 0.1, (1, 2048, 1)), jnp.float32)
    encode = nnx.jit(lambda m, w: m.encode(w))
    decode = nnx.jit(lambda m, c, key: m.decode(c, key=key))
    plain = decode(model, encode(model, x), None)
    np.testing.assert_array_equal(np.asarray(plain),
                                  np.asarray(decode(model, encode(model, x), None)))
    noisy = decode(model, encode(model, x), jax.random.key(0))
    assert not np.allclose(np.asarray(plain), np.asarray(noisy))

    def loss(m):
        out = m(x)
        return jnp.mean(jnp.abs(out.recon - x)) + jnp.mean(out.quant.commitment)

    grads = nnx.jit(nnx.grad(loss))(model)
    enc = jax.tree.leaves(nnx.state(grads.encoder, nnx.Param))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert any(float(jnp.abs(g).max()) > 0 for g in enc)  # straight-through reaches it


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="decoder_rates"):
        SnacModelConfig(decoder_rates=(8, 8, 4))
    with pytest.raises(ValueError, match="unknown SNAC config keys"):
        SnacModelConfig.from_published({"sampling_rate": 24000, "bogus": 1})
    assert SnacModelConfig.from_published(MODEL_PRESETS["32khz"].published()) \
        == MODEL_PRESETS["32khz"]


@pytest.mark.slow  # compiles SNAC's whole GAN step: CI runs it
def test_adversarial_program_steps_with_the_valid_mask():
    """``--adversarial`` trains through ``common.train.gan`` with the shared
    discriminators and hands them the batch's valid mask (SNAC left-pads too)."""
    import dataclasses

    from tokenizer.snac.train_config import tiny
    from tokenizer.snac.training import build_program

    cfg = tiny()
    model = dataclasses.replace(cfg.model, encoder_rates=(8, 8), decoder_rates=(8, 8))
    cfg = dataclasses.replace(cfg, model=model, adversarial=True,
                              gan=dataclasses.replace(cfg.gan, disc_start_step=0))
    program = build_program(cfg)
    state = jax.jit(program.init)()
    n = 2 * model.pad_multiple
    valid = np.arange(n)[None, :] >= np.array([0, n // 3])[:, None]
    wav = np.where(valid, np.random.default_rng(0).normal(0, 0.1, (2, n)), 0.0)
    batch = {"audio": wav[..., None].astype(np.float32), "audio_valid": valid}
    state, m = jax.jit(program.step)(state, batch)
    assert float(m["disc/started"]) == 1.0
    assert all(np.isfinite(float(v)) for v in m.values())
    assert float(m["gen/adv_loss"]) > 0 and float(m["disc/loss"]) > 0
