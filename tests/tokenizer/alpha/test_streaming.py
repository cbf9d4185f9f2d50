"""Streaming (chunked, causal) encode/decode against the offline codec on whole signals."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn.attention import KVCache
from tests.helpers import assert_close
from tests.tokenizer.alpha.test_model import SR, micro
from tokenizer.alpha.model import AlphaCodec
from tokenizer.alpha.streaming import StreamingCodec


def causal(kind="phoneme_bsq", window=None, layers=1):
    cfg = micro(kind)
    return dataclasses.replace(cfg, codec=dataclasses.replace(
        cfg.codec, causal=True, window=window, transformer_layers=layers))


def _speechlike(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f = rng.uniform(150, 900, (2, 1))
    wav = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (wav + 0.02 * rng.standard_normal((2, n)))[..., None].astype(np.float32)


@pytest.mark.parametrize("kind,window,layers", [
    ("phoneme_bsq", None, 1), ("rvq", 6, 2), ("fsq", None, 0)])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_stream_matches_offline(kind, window, layers):
    cfg = causal(kind, window, layers)
    codec = AlphaCodec(cfg, rngs=nnx.Rngs(1))
    codec.eval()
    hop, frames = cfg.codec.hop, 37  # the windowed run slides its cache several times
    wav = _speechlike(frames * hop)
    valid = jnp.ones(wav.shape[:2], bool)
    # Compiled, as the codec is used: op by op these few calls take 20 s on CPU.
    z_ref, codes_ref, fv = nnx.jit(lambda c, w, v: (c.encoder(w, v)[0], *c.encode(w, v)))(
        codec, jnp.asarray(wav), valid)
    wav_ref = nnx.jit(lambda c, codes, v: c.decode(codes, v))(codec, codes_ref, fv)

    stream = StreamingCodec(codec, batch=2, chunk_frames=5)
    # The raw latents, over uneven chunks (1 to 5 frames).
    enc = codec.encoder.init_stream(2, max_chunk_frames=5)
    stream_step = nnx.jit(lambda e, x, state: e.stream(x, state))
    zs, start = [], 0
    for k in [1, 5, 3, 2, 5, 4, 5, 5, 5, 2]:
        z, enc = stream_step(codec.encoder, jnp.asarray(wav[:, start * hop:(start + k) * hop]),
                             enc)
        zs.append(z)
        start += k
    assert start == frames
    assert_close(jnp.concatenate(zs, axis=1), z_ref, 1e-5)

    codes = stream.encode(wav)
    assert codes.shape == codes_ref.shape and codes.dtype == np.int32
    np.testing.assert_array_equal(codes, codes_ref)
    out = stream.decode(codes)
    assert out.shape == wav.shape
    assert_close(out, wav_ref, 1e-5)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_stream_decoder_has_no_seams_at_chunk_boundaries():
    """Any chunking gives the same waveform, sample for sample at the boundaries."""
    cfg = causal()
    codec = AlphaCodec(cfg, rngs=nnx.Rngs(2))
    wav = _speechlike(24 * cfg.codec.hop, seed=3)
    codes = StreamingCodec(codec, batch=2, chunk_frames=8).encode(wav)
    a = StreamingCodec(codec, batch=2, chunk_frames=1).decode(codes)
    b = StreamingCodec(codec, batch=2, chunk_frames=7).decode(codes)
    assert_close(a, b, 1e-5)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_stream_errors():
    with pytest.raises(ValueError, match="causal codec"):
        StreamingCodec(AlphaCodec(micro(), rngs=nnx.Rngs(0)))
    cfg = causal()
    stream = StreamingCodec(AlphaCodec(cfg, rngs=nnx.Rngs(0)), chunk_frames=2)
    with pytest.raises(ValueError, match="1 to 2 frames of 20 samples"):
        stream.encode_chunk(stream.init_encoder(), np.zeros((1, 30, 1)))
    with pytest.raises(ValueError, match="1 to 2 frames of 20 samples"):
        stream.encode_chunk(stream.init_encoder(), np.zeros((1, 60, 1)))
    with pytest.raises(ValueError, match="expected"):
        stream.decode_chunk(stream.init_decoder(), np.zeros((1, 2, 5), np.int32))


def test_kv_cache_keep_last_slides_the_window():
    c = KVCache.empty(1, 6, 1, 1)
    for i in range(3):
        k = jnp.full((1, 2, 1, 1), float(i))
        c = c.keep_last(6 - 2).append(k, k, jnp.arange(2.0)[None] + 2 * i, jnp.ones((1, 2), bool))
    # 6 frames written into 6 slots with room kept for 2: the last 4 before the final append
    np.testing.assert_array_equal(np.asarray(c.positions[0, :int(c.end)]), [0, 1, 2, 3, 4, 5])
    c = c.keep_last(3)
    assert int(c.end) == 3
    np.testing.assert_array_equal(np.asarray(c.positions[0, :3]), [3, 4, 5])
    np.testing.assert_array_equal(np.asarray(c.valid[0]), [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(c.k[0, :3, 0, 0]), [1, 2, 2])
