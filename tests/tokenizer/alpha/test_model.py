"""The alpha codec end to end: quantizer choices, encode/decode, losses, the GAN step."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.losses.adversarial import lsgan_d_loss, lsgan_g_loss
from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.alpha.components.encoder import ConvStackConfig
from tokenizer.alpha.config import PRESETS, AlphaConfig, LossConfig, QuantizerConfig
from tokenizer.alpha.losses.discriminator_loss import discriminator_loss
from tokenizer.alpha.losses.generator_loss import (
    generator_adversarial_loss,
    generator_loss,
    quantizer_loss,
)
from tokenizer.alpha.model import AlphaCodec, bitrate, code_streams
from tokenizer.codec.discriminators import DiscriminatorConfig
from tokenizer.codec.masks import lengths_to_valid

SR = 8000


def micro(kind="phoneme_bsq", **q) -> AlphaConfig:
    """A codec small enough to compile in seconds (hop 20 at 8 kHz: 400 Hz frames)."""
    return AlphaConfig(
        sample_rate=SR,
        codec=ConvStackConfig(channels=2, decoder_channels=8, strides=(4, 5), dilations=(1,),
                              latent_dim=8, transformer_layers=1, transformer_heads=2),
        quantizer=QuantizerConfig(kind=kind, phoneme_vocab=6, num_bits=4, group_size=2,
                                  codebook_size=8, num_quantizers=2, fsq_levels=(3, 3), **q),
        disc=DiscriminatorConfig(periods=(2,), mpd_channels=(4,), msd_scales=1,
                                 msd_channels=(4,), stft_ffts=(64,), stft_channels=2,
                                 stft_bands=((0.0, 1.0),)),
        loss=LossConfig(mel_n_ffts=(64, 128), mel_n_mels=(8, 16), stft=1.0, waveform=1.0))


def _batch(b=2, n=400, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([n, n - 140][:b])
    valid = np.asarray(lengths_to_valid(jnp.asarray(lengths), n))
    t = np.arange(n) / SR
    wav = 0.4 * np.sin(2 * np.pi * rng.uniform(200, 600, (b, 1)) * t)[..., None]
    wav = np.where(valid[..., None], wav, 0.0).astype(np.float32)
    phonemes = rng.integers(1, 6, (b, 5)).astype(np.int32)
    return dict(audio=wav, audio_valid=valid, audio_lengths=lengths.astype(np.int32),
                phonemes=phonemes, phonemes_valid=np.ones((b, 5), bool))


# The default quantizer is the fast check; the others are each tested in quantizers/.
@pytest.mark.parametrize("kind", ["phoneme_bsq", "bsq", "vq", "rvq", "fsq"])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_encode_decode_matches_forward(kind):
    cfg = micro(kind)
    codec = AlphaCodec(cfg, rngs=nnx.Rngs(0))
    codec.eval()
    batch = _batch()
    wav, valid = jnp.asarray(batch["audio"]), jnp.asarray(batch["audio_valid"])
    out = codec(wav, valid)
    codes, fv = codec.encode(wav, valid)
    streams = code_streams(cfg.quantizer)
    assert codes.shape == (2, 400 // cfg.codec.hop, len(streams)) and codes.dtype == jnp.int32
    for s, (_, size) in enumerate(streams):
        assert int(codes[..., s].max()) < size and int(codes[..., s].min()) >= 0
    assert int(jnp.abs(codes[1, :7]).max()) == 0  # padded frames hold code 0
    assert_close(codec.decode(codes, fv), out.recon, 1e-5)
    assert (out.quant.logits is not None) == (kind in ("phoneme_bsq", "vq"))
    assert_params_have_axes(codec)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_bitrate_and_presets():
    cfg = PRESETS["small"]
    assert cfg.frame_rate == 50.0
    q = dataclasses.replace(cfg.quantizer, phoneme_vocab=64)
    assert bitrate(dataclasses.replace(cfg, quantizer=q)) == pytest.approx(50 * (6 + 16))
    for name, preset in PRESETS.items():
        assert preset.sample_rate % preset.codec.hop == 0, name
    with pytest.raises(ValueError, match="not a multiple of the hop"):
        AlphaConfig(sample_rate=24001)
    with pytest.raises(ValueError, match="phoneme_vocab must be set"):
        AlphaCodec(AlphaConfig(), rngs=nnx.Rngs(0))


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_generator_loss_terms_and_weights():
    cfg = micro()
    codec = AlphaCodec(cfg, rngs=nnx.Rngs(0))
    batch = _batch()
    wav, valid = jnp.asarray(batch["audio"]), jnp.asarray(batch["audio_valid"])
    out = codec(wav, valid)
    args = (out.recon, wav, jnp.asarray(batch["audio_lengths"]), out.quant.losses)
    kw = dict(logits=out.quant.logits, frame_valid=out.frame_valid,
              phonemes=jnp.asarray(batch["phonemes"]),
              phonemes_valid=jnp.asarray(batch["phonemes_valid"]))
    loss, m = generator_loss(*args, sample_rate=SR, cfg=cfg.loss, **kw)
    q_loss, _ = quantizer_loss(out.quant.losses, cfg.loss)
    expect = (cfg.loss.mel * m["mel"] + cfg.loss.stft * m["stft"]
              + cfg.loss.waveform * m["wav_l1"] + q_loss + cfg.loss.ctc * m["ctc"])
    assert_close(loss, expect, 1e-6)
    assert_close(m["rec_loss"], loss, 0)
    assert set(out.quant.losses) == {"vq_commitment", "vq_codebook", "bsq_commitment",
                                     "bsq_entropy"}
    # weights by suffix
    w = LossConfig(commitment=2.0, codebook=0.0, entropy=3.0)
    manual = (2.0 * (out.quant.losses["vq_commitment"] + out.quant.losses["bsq_commitment"])
              + 3.0 * out.quant.losses["bsq_entropy"])
    assert_close(quantizer_loss(out.quant.losses, w)[0], manual, 1e-6)
    # no phonemes in the batch (a source without transcripts): no CTC term
    _, m2 = generator_loss(*args, sample_rate=SR, cfg=cfg.loss, logits=out.quant.logits,
                           frame_valid=out.frame_valid)
    assert "ctc" not in m2
    # zero weights drop terms from the graph
    off = dataclasses.replace(cfg.loss, stft=0.0, waveform=0.0)
    _, m3 = generator_loss(*args, sample_rate=SR, cfg=off, **kw)
    assert "stft" not in m3 and "wav_l1" not in m3
    # the waveform L1 ignores padding: garbage there changes nothing
    garbage = out.recon.at[1, :140].set(0.9)
    _, m4 = generator_loss(garbage, *args[1:], sample_rate=SR, cfg=cfg.loss, **kw)
    for k in ("mel", "stft", "wav_l1"):
        assert_close(m4[k], m[k], 1e-6)


def test_adversarial_losses_against_formulas():
    rng = np.random.default_rng(1)
    real = [jnp.asarray(rng.normal(size=(2, 7, 1))), jnp.asarray(rng.normal(size=(2, 3, 2, 1)))]
    fake = [jnp.asarray(rng.normal(size=(2, 7, 1))), jnp.asarray(rng.normal(size=(2, 3, 2, 1)))]
    d, m = discriminator_loss(real, fake, names=["mpd2", "stft64"])
    ref = sum(np.mean((1 - np.asarray(r)) ** 2) + np.mean(np.asarray(f) ** 2)
              for r, f in zip(real, fake, strict=True))
    assert_close(d, ref, 1e-6)
    assert "mpd2/real_loss" in m and "stft64/fake_loss" in m and "d0/real_loss" not in m
    assert_close(d, lsgan_d_loss(real, fake)[0], 0)
    feats_r = [[jnp.ones((2, 3))], [jnp.zeros((2, 4)), jnp.ones((1, 2))]]
    feats_f = [[jnp.zeros((2, 3))], [jnp.ones((2, 4)), jnp.ones((1, 2))]]
    g, gm = generator_adversarial_loss(fake, feats_r, feats_f, feature_weight=2.0)
    assert_close(gm["feature"], 2.0, 1e-6)  # |0-1| + |1-0| + 0
    assert_close(g, lsgan_g_loss(fake)[0] + 4.0, 1e-6)
    with pytest.raises(ValueError, match="kind"):
        discriminator_loss(real, fake, kind="wgan")


@pytest.mark.slow  # compiles the codec's whole GAN step: CI runs it
def test_gan_program_trains_nothing_on_the_padding():
    """The alpha program hands the batch's valid mask to the GAN: what the left padding
    holds changes no loss and neither model's update (the codec zeroes its padded
    input, the GAN its discriminators')."""
    import jax

    from tokenizer.alpha.training import build_program

    cfg = dataclasses.replace(micro(), gan=dataclasses.replace(micro().gan, r1_weight=1.0))
    program = build_program(cfg)
    state = jax.jit(program.init)()
    step = jax.jit(program.step)
    batch = _batch()
    outs = []
    for junk in (0.0, 0.7):
        b = dict(batch, audio=np.where(batch["audio_valid"][..., None], batch["audio"],
                                       junk).astype(np.float32))
        outs.append(step(state, b))
    (a, m_a), (b, m_b) = outs
    assert float(m_a["disc/started"]) == 1.0
    for k in m_a:
        assert_close(m_b[k], m_a[k], 1e-6)
    for x, y in zip(jax.tree.leaves((a.gen.params, a.disc.params)),
                    jax.tree.leaves((b.gen.params, b.disc.params)), strict=True):
        assert_close(y, x, 1e-6)


def test_hq48k_preset_is_48khz_at_50hz():
    from common.config import parse_config

    cfg = PRESETS["hq48k"]
    assert (cfg.sample_rate, cfg.codec.hop, cfg.frame_rate) == (48000, 960, 50.0)
    assert cfg.codec.strides == (2, 6, 8, 10)
    # the codes are small's: same rate and bitrate, twice the audio bandwidth
    q = dataclasses.replace(cfg.quantizer, phoneme_vocab=64)
    small = dataclasses.replace(PRESETS["small"], quantizer=q)
    assert bitrate(dataclasses.replace(cfg, quantizer=q)) == bitrate(small)
    assert parse_config(AlphaConfig, PRESETS, ["--preset", "hq48k"]) == cfg


def test_hq48k_codec_frames():  # shapes only (eval_shape): no weights, no compile
    import jax

    cfg = dataclasses.replace(PRESETS["hq48k"], quantizer=dataclasses.replace(
        PRESETS["hq48k"].quantizer, phoneme_vocab=64))
    codec = nnx.eval_shape(lambda: AlphaCodec(cfg, rngs=nnx.Rngs(0)))
    n = 48000 // 5  # 0.2 s: 10 frames
    wav = jax.ShapeDtypeStruct((1, n, 1), jnp.float32)
    valid = jax.ShapeDtypeStruct((1, n), jnp.bool_)
    out = nnx.eval_shape(lambda c, w, v: c(w, v), codec, wav, valid)
    assert out.recon.shape == (1, n, 1) and out.frame_valid.shape == (1, 10)
