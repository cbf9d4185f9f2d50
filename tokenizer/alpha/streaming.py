"""Streaming (chunked, causal) encode and decode with a trained alpha codec.

A causal codec (``codec.causal=True``) can encode audio as it arrives and decode codes
as they are produced. ``StreamingCodec`` keeps each direction's state explicitly (the
convs' left contexts, the transposed convs' overlap tails, the attention's keys and
values) and runs one jitted step per chunk::

    stream = StreamingCodec(codec, chunk_frames=10)   # 200 ms chunks at 50 Hz
    enc = stream.init_encoder()
    for chunk in mic:                                 # [B, k * hop, 1] each
        enc, codes = stream.encode_chunk(enc, chunk)  # [B, k, S]
    dec = stream.init_decoder()
    dec, wav = stream.decode_chunk(dec, codes)        # [B, k * hop, 1]

Chunks concatenated equal the offline ``encode``/``decode`` of the whole signal (to
float rounding; the codes exactly, barring a latent on a quantisation boundary), so
there are no seams: every chunk boundary sees the same context as offline. With a
windowed attention (``codec.window``) that holds for streams of any length; with full
causal attention, for the first ``context_frames`` frames, after which the attention
slides over the last ``context_frames``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tokenizer.alpha.model import AlphaCodec, code_streams


class StreamingCodec:
    """Chunked encode/decode sessions of ``batch`` parallel streams over ``codec``.

    Args:
      codec: a causal ``AlphaCodec`` (its weights are captured; it is put in eval mode).
      batch: parallel streams per session.
      chunk_frames: the largest chunk, in frames (``* hop`` samples for the encoder).
      context_frames: attention history kept for a codec without a window.
    """

    def __init__(self, codec: AlphaCodec, *, batch: int = 1, chunk_frames: int = 25,
                 context_frames: int = 1500):
        cfg = codec.cfg
        if not cfg.codec.causal:
            raise ValueError("streaming needs a causal codec (codec.causal=True); this one "
                             "looks ahead, so encode or decode whole files instead")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        codec.eval()
        self.cfg, self.batch, self.chunk_frames = cfg, batch, chunk_frames
        self.hop = cfg.codec.hop
        self.num_streams = len(code_streams(cfg.quantizer))
        self._kw = dict(context_frames=context_frames, max_chunk_frames=chunk_frames)
        self._graphdef, self._state = nnx.split(codec)
        self._encode_step = jax.jit(self._encode_impl)
        self._decode_step = jax.jit(self._decode_impl)

    # ---------------------------------------------------------------- sessions

    def _codec(self, params) -> AlphaCodec:
        return nnx.merge(self._graphdef, params)

    def init_encoder(self):
        """The encoder state before the first chunk."""
        return self._codec(self._state).encoder.init_stream(self.batch, **self._kw)

    def init_decoder(self):
        """The decoder state before the first chunk."""
        return self._codec(self._state).decoder.init_stream(self.batch, **self._kw)

    def _encode_impl(self, params, state, wav):
        codec = self._codec(params)
        z, state = codec.encoder.stream(wav, state)
        codes = codec.quantizer(z, jnp.ones(z.shape[:2], bool)).codes
        return state, codes

    def _decode_impl(self, params, state, codes):
        codec = self._codec(params)
        if self.cfg.quantizer.kind in ("bsq", "vq", "fsq"):  # single-stream decoders
            codes = codes[..., 0]
        wav, state = codec.decoder.stream(codec.quantizer.decode_codes(codes), state)
        return state, wav

    def encode_chunk(self, state, wav: jax.Array) -> tuple[object, jax.Array]:
        """``wav [B, k * hop, 1]`` (k <= chunk_frames) -> ``(state, codes int32 [B, k, S])``."""
        wav = jnp.asarray(wav, jnp.float32)
        k, rem = divmod(wav.shape[1], self.hop)
        if rem or not 0 < k <= self.chunk_frames:
            raise ValueError(f"encode_chunk: {wav.shape[1]} samples; a chunk is 1 to "
                             f"{self.chunk_frames} frames of {self.hop} samples")
        return self._encode_step(self._state, state, wav)

    def decode_chunk(self, state, codes: jax.Array) -> tuple[object, jax.Array]:
        """``codes [B, k, S]`` (k <= chunk_frames) -> ``(state, wav [B, k * hop, 1])``."""
        codes = jnp.asarray(codes, jnp.int32)
        if codes.ndim != 3 or codes.shape[-1] != self.num_streams \
                or not 0 < codes.shape[1] <= self.chunk_frames:
            raise ValueError(f"decode_chunk: codes {codes.shape}; expected [B, 1 to "
                             f"{self.chunk_frames}, {self.num_streams}]")
        return self._decode_step(self._state, state, codes)

    # ---------------------------------------------------------------- whole signals

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """``wav [B, N, 1]`` (N a multiple of the hop) in chunks -> ``codes [B, N/hop, S]``."""
        if wav.shape[1] % self.hop:
            raise ValueError(f"encode: {wav.shape[1]} samples is not a multiple of the hop "
                             f"{self.hop} (pad the end with zeros)")
        step = self.chunk_frames * self.hop
        state, out = self.init_encoder(), []
        for i in range(math.ceil(wav.shape[1] / step)):
            state, codes = self.encode_chunk(state, wav[:, i * step:(i + 1) * step])
            out.append(np.asarray(codes))
        return np.concatenate(out, axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``codes [B, T, S]`` in chunks -> ``wav [B, T * hop, 1]``."""
        state, out = self.init_decoder(), []
        for i in range(math.ceil(codes.shape[1] / self.chunk_frames)):
            state, wav = self.decode_chunk(
                state, codes[:, i * self.chunk_frames:(i + 1) * self.chunk_frames])
            out.append(np.asarray(wav))
        return np.concatenate(out, axis=1)
