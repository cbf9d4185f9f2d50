"""SNAC: a multi-scale neural audio codec (Siuzdak et al., 2024) in Flax NNX.

    wav [B, N, 1] --pad--> [B, N', 1] --Encoder--> z [B, T, dim]      T = N' / hop
       --ResidualVectorQuantize--> codes: [B, T / s_l] per level (coarse first)
       --Decoder--> recon [B, N', 1]

Padding: N is right-padded with zeros to ``N' = cfg.padded_length(N)``, a multiple of
``hop * lcm(vq_strides[0], attn_window_size or 1)`` (2048 samples for the 24 kHz model,
12288 for the 32/44 kHz ones), as the PyTorch package's ``preprocess`` does. ``__call__``
cuts the reconstruction back to N; ``decode`` returns all N' samples (the codes do not
know N).

Parameters map one to one onto the PyTorch package's state dict
(``tokenizer.snac.convert``); with the same weights and no noise the outputs agree to
float32 rounding and the codes exactly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from tokenizer.snac.config import MODEL_PRESETS, SnacModelConfig
from tokenizer.snac.layers import Decoder, Encoder
from tokenizer.snac.quantizer import QuantizerOutput, ResidualVectorQuantize


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SnacOutput:
    """recon ``[B, N, 1]`` (cut to the input length); quant: codes, losses, latents;
    z: the encoder's latent ``[B, T, dim]``."""

    recon: jax.Array
    quant: QuantizerOutput
    z: jax.Array

    @property
    def codes(self) -> list[jax.Array]:
        return self.quant.codes


class SNAC(nnx.Module):
    """The codec. ``cfg``: a ``SnacModelConfig`` or a preset name (``"24khz"``, ...)."""

    def __init__(self, cfg: SnacModelConfig | str = "24khz", *, rngs: nnx.Rngs):
        if isinstance(cfg, str):
            if cfg not in MODEL_PRESETS:
                raise ValueError(f"unknown SNAC preset {cfg!r}; known: {tuple(MODEL_PRESETS)}")
            cfg = MODEL_PRESETS[cfg]
        self.cfg = cfg
        dt = jnp.bfloat16 if cfg.dtype == "bfloat16" else None
        self.encoder = Encoder(cfg.encoder_dim, cfg.encoder_rates, depthwise=cfg.depthwise,
                               window=cfg.attn_window_size, dtype=dt, rngs=rngs)
        self.quantizer = ResidualVectorQuantize(cfg.dim, cfg.codebook_size, cfg.codebook_dim,
                                                cfg.vq_strides, dtype=dt, rngs=rngs)
        self.decoder = Decoder(cfg.dim, cfg.decoder_dim, cfg.decoder_rates, noise=cfg.noise,
                               depthwise=cfg.depthwise, window=cfg.attn_window_size,
                               dtype=dt, rngs=rngs)

    def pad(self, wav: jax.Array) -> jax.Array:
        """``[B, N, 1] -> [B, cfg.padded_length(N), 1]``, zeros on the right."""
        if wav.ndim != 3 or wav.shape[-1] != 1:
            raise ValueError(f"SNAC expects mono audio [B, N, 1], got shape {wav.shape}")
        n = wav.shape[1]
        return jnp.pad(wav, ((0, 0), (0, self.cfg.padded_length(n) - n), (0, 0)))

    def __call__(self, wav: jax.Array, *, key: jax.Array | None = None) -> SnacOutput:
        """Encode, quantize (straight-through) and decode; ``key`` draws the decoder's
        noise (None: none)."""
        n = wav.shape[1]
        z = self.encoder(self.pad(wav).astype(jnp.float32))
        quant = self.quantizer(z)
        recon = self.decoder(quant.z_q, key)
        return SnacOutput(recon[:, :n].astype(jnp.float32), quant, z)

    def encode(self, wav: jax.Array) -> list[jax.Array]:
        """``[B, N, 1] -> [codes int32 [B, T_l]]`` with ``T_l = cfg.code_lengths(N)[l]``."""
        return self.quantizer(self.encoder(self.pad(wav).astype(jnp.float32))).codes

    def decode(self, codes, *, key: jax.Array | None = None) -> jax.Array:
        """One ``int [B, T_l]`` per level -> ``[B, T_0 * s_0 * hop, 1]`` float32."""
        return self.decoder(self.quantizer.from_codes(codes), key).astype(jnp.float32)

