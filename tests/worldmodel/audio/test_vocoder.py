"""The vocoder: the masked iSTFT against the librosa-semantics one and as the inverse
of a "same"-padded STFT; Vocos's and HiFi-GAN's shapes, logical axes, jit and grad
through the loss, and masks (a left-padded row equals its unpadded self on the valid
samples); config checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.audio.frame_istft import frame_istft, output_length, sample_mask
from common.audio.stft import istft, stft
from tests.helpers import assert_close, assert_params_have_axes
from worldmodel.audio.vocoder.config import HifiGanConfig, VocoderConfig, VocosConfig, tiny
from worldmodel.audio.vocoder.hifigan import HifiGan
from worldmodel.audio.vocoder.training import build_generator, vocoder_loss
from worldmodel.audio.vocoder.vocos import Vocos


def _spec(rng, shape):
    return jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape),
                       jnp.complex64)


def test_center_istft_equals_librosa_semantics():
    spec = _spec(np.random.default_rng(0), (2, 9, 129))
    ours = frame_istft(spec, n_fft=256, hop_length=64, padding="center")
    assert ours.shape == (2, output_length(9, 256, 64, "center")) == (2, 8 * 64)
    assert_close(ours, istft(spec, n_fft=256, hop_length=64, center=True, length=8 * 64))


@pytest.mark.parametrize("n_fft,hop", [(640, 160), (1024, 256), (512, 160)])
def test_same_istft_inverts_a_same_padded_stft(n_fft, hop):
    """Vocos's "same" framing: the signal padded by (n_fft - hop) / 2 on both sides,
    uncentred frames; T = N / hop frames give back the N samples."""
    n = 20 * hop
    x = np.random.default_rng(1).standard_normal((2, n)).astype(np.float32)
    pad = (n_fft - hop) // 2
    spec = stft(jnp.pad(jnp.asarray(x), ((0, 0), (pad, pad))), n_fft=n_fft,
                hop_length=hop, center=False)
    assert spec.shape[1] == n // hop
    assert_close(frame_istft(spec, n_fft=n_fft, hop_length=hop), x)


def test_masked_istft_ignores_invalid_frames():
    rng = np.random.default_rng(2)
    spec = _spec(rng, (1, 12, 321))
    junk = _spec(rng, (1, 5, 321)) * 100
    valid = jnp.asarray([[False] * 5 + [True] * 12])
    for padding in ("same", "center"):
        alone = frame_istft(spec, n_fft=640, hop_length=160, padding=padding)
        padded = frame_istft(jnp.concatenate([junk, spec], 1), valid, n_fft=640,
                             hop_length=160, padding=padding)
        mask = sample_mask(valid, 160, padding)[0]
        assert_close(padded[0, np.asarray(mask)], alone[0, :int(mask.sum())])
        assert float(jnp.max(jnp.abs(padded[0, ~np.asarray(mask)]))) < 1e3  # finite


def test_shapes_and_axes():
    cfg = VocosConfig.tiny()
    model = Vocos(cfg, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    wav, valid = model(jnp.zeros((2, 11, 80)), jnp.ones((2, 11), bool))
    assert wav.shape == valid.shape == (2, 11 * 160) and wav.dtype == jnp.float32
    center = Vocos(dataclasses.replace(cfg, padding="center"), rngs=nnx.Rngs(0))
    assert center(jnp.zeros((1, 11, 80)))[0].shape == (1, 10 * 160)
    bf16 = Vocos(dataclasses.replace(cfg, dtype="bfloat16"), rngs=nnx.Rngs(0))
    wav16 = bf16(jnp.ones((1, 11, 80)))[0]
    assert wav16.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(wav16)))


def test_left_padded_row_equals_its_unpadded_self():
    for padding in ("same", "center"):
        model = Vocos(dataclasses.replace(VocosConfig.tiny(), padding=padding),
                      rngs=nnx.Rngs(3))
        rng = np.random.default_rng(4)
        mel = jnp.asarray(rng.standard_normal((1, 20, 80)), jnp.float32)
        junk = jnp.asarray(50 * rng.standard_normal((1, 7, 80)), jnp.float32)
        valid = jnp.asarray([[False] * 7 + [True] * 20])
        alone, _ = model(mel)
        padded, wav_valid = model(jnp.concatenate([junk, mel], 1), valid)
        keep = np.asarray(wav_valid[0])
        assert keep.sum() == alone.shape[1]
        assert_close(padded[0, keep], alone[0])


def _batch(cfg: VocoderConfig, lengths, n=4800):
    rng = np.random.default_rng(5)
    audio = np.zeros((len(lengths), n, 1), np.float32)
    for i, n_valid in enumerate(lengths):  # left-padded, as the pipeline pads
        t = np.arange(n_valid) / cfg.features.sample_rate
        audio[i, n - n_valid:, 0] = (0.3 * np.sin(2 * np.pi * 220 * t)
                                     + 0.01 * rng.standard_normal(n_valid))
    return {"audio": jnp.asarray(audio), "audio_lengths": jnp.asarray(lengths, jnp.int32)}


def test_loss_jits_and_has_gradients():
    cfg = tiny()
    model = Vocos(cfg.model, rngs=nnx.Rngs(0))
    batch = _batch(cfg, [4800, 3200])
    graphdef, params = nnx.split(model)

    @jax.jit
    def loss(params, batch):
        _, _, valid, value, metrics = vocoder_loss(nnx.merge(graphdef, params), batch, cfg)
        return value, (valid, metrics)

    (value, (valid, metrics)), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
    assert np.isfinite(float(value)) and set(metrics) == {"mel", "stft"}
    # valid samples: whole hops of valid mel frames, the last (centred on N) excluded
    assert np.asarray(valid.sum(1)).tolist() == [4800, 3200]
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and min(norms) > 0


@pytest.mark.slow  # two compiles of the loss
def test_padding_does_not_change_the_loss():
    """A row's loss is the same alone and left-padded in a longer batch (by 1280
    samples: whole hops of the mel and of every STFT resolution, so the losses' frame
    grids line up too)."""
    cfg = tiny()
    model = Vocos(cfg.model, rngs=nnx.Rngs(0))
    short = _batch(cfg, [3200], n=3200)
    padded = _batch(cfg, [3200], n=4480)
    padded["audio"] = padded["audio"].at[:, :1280].set(0.7)  # junk in the padding
    graphdef, params = nnx.split(model)
    loss = jax.jit(lambda p, batch: vocoder_loss(nnx.merge(graphdef, p), batch, cfg)[3])
    assert_close(loss(params, padded), loss(params, short))


def test_config_refuses_mismatched_front_end():
    with pytest.raises(ValueError, match="n_mels"):
        VocoderConfig(model=dataclasses.replace(VocosConfig.tiny(), n_mels=100))
    with pytest.raises(ValueError, match="hop_length"):
        VocoderConfig(model=VocosConfig(n_fft=1024, hop_length=256))
    with pytest.raises(ValueError, match="even"):
        VocosConfig(n_fft=641)
    with pytest.raises(ValueError, match="padding"):
        VocosConfig(padding="valid")


@pytest.mark.slow  # HiFi-GAN's sample-rate convs and their gradient compile for ~1 min
def test_hifigan_generator_shapes_masks_and_gradients():
    cfg = dataclasses.replace(tiny(), generator="hifigan", hifigan=HifiGanConfig.tiny())
    model = build_generator(cfg, nnx.Rngs(0))
    assert isinstance(model, HifiGan)
    assert_params_have_axes(model)
    rng = np.random.default_rng(6)
    mel = jnp.asarray(rng.standard_normal((1, 12, 80)), jnp.float32)
    junk = jnp.asarray(50 * rng.standard_normal((1, 4, 80)), jnp.float32)
    graphdef, params = nnx.split(model)
    # Jitted: eager dispatch compiles each of the many sample-rate convs on its own.
    run = jax.jit(lambda p, x, v: nnx.merge(graphdef, p)(x, v))
    alone, ok = run(params, mel, jnp.ones((1, 12), bool))
    assert alone.shape == ok.shape == (1, 12 * 160) and bool(ok.all())
    padded, wav_valid = run(params, jnp.concatenate([junk, mel], 1),
                            jnp.asarray([[False] * 4 + [True] * 12]))
    assert_close(padded[0, np.asarray(wav_valid[0])], alone[0])
    batch = _batch(cfg, [4800, 3200])
    grads = jax.jit(jax.grad(
        lambda p: vocoder_loss(nnx.merge(graphdef, p), batch, cfg)[3]))(params)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and min(norms) > 0


def test_hifigan_config_checks_the_hop():
    with pytest.raises(ValueError, match="hop"):
        VocoderConfig(generator="hifigan",
                      hifigan=HifiGanConfig(upsample_rates=(8, 8, 2, 2),
                                            upsample_kernel_sizes=(16, 16, 4, 4)))
    with pytest.raises(ValueError, match="even"):
        HifiGanConfig(upsample_kernel_sizes=(10, 8, 8, 4))
    with pytest.raises(ValueError, match="generator"):
        VocoderConfig(generator="wavenet")
