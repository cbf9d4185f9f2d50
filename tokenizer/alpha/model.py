"""The alpha codec: RawEncoder -> quantizer -> RawDecoder.

``AlphaCodec(cfg)`` maps a left-padded batch ``wav [B, N, 1]`` with ``valid [B, N]`` to
a reconstruction and the quantizer's output. ``encode`` gives the integer codes
``[B, T, S]`` (S streams: phoneme code and BSQ code for the two-stage quantizer) at
``cfg.frame_rate`` Hz, ``decode`` turns codes back into audio; ``decode(encode(x))``
equals the forward pass's reconstruction in eval mode.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from tokenizer.alpha.components.encoder import RawDecoder, RawEncoder
from tokenizer.alpha.components.quantizers.base import QuantizerOutput
from tokenizer.alpha.components.quantizers.bsq import BinarySphericalQuantizer
from tokenizer.alpha.components.quantizers.fsq import FiniteScalarQuantizer
from tokenizer.alpha.components.quantizers.rvq import PhonemeBSQ, ResidualVQ
from tokenizer.alpha.components.quantizers.vq import VectorQuantizer
from tokenizer.alpha.config import AlphaConfig, QuantizerConfig


def build_quantizer(q: QuantizerConfig, dim: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """The quantizer named by ``q.kind`` over latents of width ``dim``."""
    if q.kind == "phoneme_bsq":
        if q.phoneme_vocab < 2:
            raise ValueError("quantizer.phoneme_vocab must be set (>= 2: blank + phonemes); "
                             "the training script takes it from the data's phoneme vocab")
        return PhonemeBSQ(dim, q.phoneme_vocab, vq_dim=q.vq_dim, num_bits=q.num_bits,
                          group_size=q.group_size, gamma=q.gamma,
                          inv_temperature=q.inv_temperature, ema=q.ema,
                          dead_code_threshold=q.dead_code_threshold,
                          shared_gradient=q.phoneme_shared_gradient,
                          init_logit_scale=q.phoneme_logit_scale, rngs=rngs)
    if q.kind == "bsq":
        return BinarySphericalQuantizer(dim, q.num_bits, group_size=q.group_size, gamma=q.gamma,
                                        inv_temperature=q.inv_temperature, rngs=rngs)
    if q.kind == "vq":
        return VectorQuantizer(dim, q.codebook_size, q.vq_dim, ema=q.ema,
                               dead_code_threshold=q.dead_code_threshold, rngs=rngs)
    if q.kind == "rvq":
        return ResidualVQ(dim, q.num_quantizers, q.codebook_size, q.vq_dim,
                          dropout=q.rvq_dropout, ema=q.ema,
                          dead_code_threshold=q.dead_code_threshold, rngs=rngs)
    if q.kind == "fsq":
        return FiniteScalarQuantizer(dim, q.fsq_levels, rngs=rngs)
    raise ValueError(f"quantizer.kind {q.kind!r} is not one of phoneme_bsq, bsq, vq, rvq, fsq")


def code_streams(q: QuantizerConfig) -> list[tuple[str, int]]:
    """``[(name, codebook size)]`` of the code streams ``encode`` returns."""
    if q.kind == "phoneme_bsq":
        return [("phoneme", q.phoneme_vocab), ("bsq", 2**q.num_bits)]
    if q.kind == "bsq":
        return [("bsq", 2**q.num_bits)]
    if q.kind == "vq":
        return [("vq", q.codebook_size)]
    if q.kind == "rvq":
        return [(f"rvq{i}", q.codebook_size) for i in range(q.num_quantizers)]
    return [("fsq", math.prod(q.fsq_levels))]


def bitrate(cfg: AlphaConfig) -> float:
    """Bits per second of the codes: frame rate x sum of log2(codebook sizes)."""
    return cfg.frame_rate * sum(math.log2(n) for _, n in code_streams(cfg.quantizer))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class CodecOutput:
    """recon: ``[B, N, 1]`` float32 in [-1, 1], zero on padding; frame_valid ``[B, T]``;
    quant: the quantizer's output (codes ``[B, T, S]``, losses, metrics, logits)."""

    recon: jax.Array
    frame_valid: jax.Array
    quant: QuantizerOutput


class AlphaCodec(nnx.Module):
    def __init__(self, cfg: AlphaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = RawEncoder(cfg.codec, rngs=rngs)
        self.quantizer = build_quantizer(cfg.quantizer, cfg.codec.latent_dim, rngs=rngs)
        self.decoder = RawDecoder(cfg.codec, rngs=rngs)

    def __call__(self, wav: jax.Array, valid: jax.Array, *,
                 key: jax.Array | None = None) -> CodecOutput:
        """``wav [B, N, 1]``, ``valid [B, N]`` -> ``CodecOutput``. ``key`` drives the
        quantizer's randomness in training (dead-code restarts, quantizer dropout)."""
        z, frame_valid = self.encoder(wav, valid)
        quant = self.quantizer(z, frame_valid, key=key)
        recon = self.decoder(quant.quantized, frame_valid)
        return CodecOutput(recon=recon, frame_valid=frame_valid, quant=quant)

    def encode(self, wav: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``wav [B, N, 1]``, ``valid [B, N]`` -> ``(codes int32 [B, T, S], frame_valid)``;
        padded frames hold code 0."""
        z, frame_valid = self.encoder(wav, valid)
        codes = self.quantizer(z, frame_valid).codes
        return jnp.where(frame_valid[..., None], codes, 0), frame_valid

    def decode(self, codes: jax.Array, frame_valid: jax.Array) -> jax.Array:
        """``codes [B, T, S]``, ``frame_valid [B, T]`` -> ``wav [B, T * hop, 1]``."""
        if self.cfg.quantizer.kind in ("bsq", "vq", "fsq"):  # single-stream decoders take [B, T]
            codes = codes[..., 0]
        return self.decoder(self.quantizer.decode_codes(codes), frame_valid)
