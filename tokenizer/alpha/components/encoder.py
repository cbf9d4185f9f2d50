"""RawEncoder and RawDecoder: waveform <-> latent frames (DAC/EnCodec-style convs plus a
RoPE transformer at the latent rate).

Encoder: ``[B, N, 1]`` -> conv (kernel 7, ``channels``) -> one ``DownBlock`` per stride,
doubling the channels -> Snake -> conv (kernel 3) to ``latent_dim`` -> transformer
blocks over frames -> ``[B, N / hop, latent_dim]``, hop = prod(strides).
Decoder mirrors it: transformer -> conv (kernel 7) to ``decoder_channels`` -> one
``UpBlock`` per stride in reverse, halving the channels -> Snake -> conv (kernel 7) to 1
-> tanh -> ``[B, N, 1]``.

``causal=True`` makes every conv causal and the attention causal (optionally windowed),
so frame t depends only on samples up to the end of its hop: the streaming mode.
``init_stream(batch, ...)`` / ``stream(x, state)`` run that mode chunk by chunk with the
convs' contexts and the attention's keys and values carried in an explicit state;
chunks concatenated equal the offline call on the whole (unpadded) signal, exactly while
the attention sees no further back than ``context_frames`` (always, with a ``window``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.activations import Snake
from common.nn.attention import KVCache
from common.nn.conv import Conv
from common.nn.transformer import TransformerConfig, TransformerStack
from tokenizer.alpha.components.blocks import DownBlock, UpBlock
from tokenizer.alpha.config import ConvStackConfig
from tokenizer.codec.masks import apply_mask, frame_valids, positions_from_valid
from tokenizer.codec.residual import TORCH_KERNEL_INIT


def transformer_config(cfg: ConvStackConfig) -> TransformerConfig:
    """The latent-rate transformer of a conv stack."""
    return TransformerConfig(dim=cfg.latent_dim, num_layers=cfg.transformer_layers,
                             num_heads=cfg.transformer_heads, causal=cfg.causal,
                             window=cfg.window, dtype=cfg.dtype)


class _LatentTransformer(nnx.Module):
    def __init__(self, cfg: ConvStackConfig, *, rngs: nnx.Rngs):
        self.stack = (TransformerStack(transformer_config(cfg), rngs=rngs)
                      if cfg.transformer_layers > 0 else None)

    def __call__(self, h: jax.Array, valid: jax.Array) -> jax.Array:
        if self.stack is None:
            return h
        out = self.stack(h, positions=positions_from_valid(valid), valid=valid)
        return apply_mask(out.astype(h.dtype), valid)

    def init_stream(self, batch: int, context_frames: int, max_chunk_frames: int) -> dict:
        """A key/value cache for the last ``context_frames`` frames (the window, when
        set) plus one chunk of up to ``max_chunk_frames``, and the next frame's position."""
        if self.stack is None:
            return {}
        keep = self.stack.cfg.window or context_frames
        return {"kv": self.stack.init_cache(batch, keep + max_chunk_frames, jnp.float32),
                "pos": jnp.zeros((), jnp.int32)}

    def stream(self, h: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        if self.stack is None:
            return h, state
        t = h.shape[1]
        is_kv = lambda c: isinstance(c, KVCache)
        slots = jax.tree.leaves(state["kv"], is_leaf=is_kv)[0].valid.shape[-1]
        if t >= slots:
            raise ValueError(f"a chunk of {t} frames does not fit the stream's attention "
                             f"cache of {slots} slots: raise max_chunk_frames")
        # Make room for this chunk first, dropping the oldest frames: with chunks of at
        # most max_chunk_frames at least context_frames (or the window) stay visible.
        kv = jax.tree.map(lambda c: c.keep_last(slots - t), state["kv"], is_leaf=is_kv)
        pos = state["pos"] + jnp.arange(t)
        out, kv = self.stack(h, positions=pos, valid=jnp.ones(h.shape[:2], bool), cache=kv)
        return out.astype(h.dtype), {"kv": kv, "pos": state["pos"] + t}


def _require_causal(cfg: ConvStackConfig) -> None:
    if not cfg.causal:
        raise ValueError("streaming needs a causal codec (codec.causal=True); this one "
                         "looks ahead, so encode or decode whole files instead")


class RawEncoder(nnx.Module):
    """``wav [B, N, 1]``, ``valid [B, N]`` -> ``(latents [B, N/hop, latent_dim],
    frame_valid [B, N/hop])``. N must be a multiple of the hop."""

    def __init__(self, cfg: ConvStackConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pad = "causal" if cfg.causal else "same"
        wn = dict(weight_norm=cfg.weight_norm, dtype=cfg.dtype, rngs=rngs)
        self.conv_in = Conv(1, cfg.channels, 7, padding=pad, **wn)
        chans = [cfg.channels * 2**i for i in range(len(cfg.strides) + 1)]
        self.blocks = nnx.List([
            DownBlock(chans[i], chans[i + 1], s, dilations=cfg.dilations, causal=cfg.causal,
                      weight_norm=cfg.weight_norm, dtype=cfg.dtype, rngs=rngs)
            for i, s in enumerate(cfg.strides)])
        self.act = Snake(chans[-1], dtype=cfg.dtype, rngs=rngs)
        self.conv_out = Conv(chans[-1], cfg.latent_dim, 3, padding=pad, **wn)
        self.transformer = _LatentTransformer(cfg, rngs=rngs)

    def __call__(self, wav: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = wav.shape[1]
        if n % self.cfg.hop:
            raise ValueError(f"RawEncoder: {n} samples is not a multiple of the hop "
                             f"{self.cfg.hop}; pad the batch (left) to a multiple")
        valids = frame_valids(valid, self.cfg.strides)
        h = apply_mask(self.conv_in(apply_mask(wav, valid)), valids[0])
        for i, block in enumerate(self.blocks):
            h = block(h, valids[i], valids[i + 1])
        h = apply_mask(self.conv_out(self.act(h)), valids[-1])
        return self.transformer(h, valids[-1]), valids[-1]

    def init_stream(self, batch: int, *, context_frames: int = 1500,
                    max_chunk_frames: int = 64) -> dict:
        """State before the first chunk; chunks may hold up to ``max_chunk_frames``
        frames (``* hop`` samples)."""
        _require_causal(self.cfg)
        return {"conv_in": self.conv_in.init_stream(batch),
                "blocks": [b.init_stream(batch) for b in self.blocks],
                "conv_out": self.conv_out.init_stream(batch),
                "transformer": self.transformer.init_stream(batch, context_frames,
                                                            max_chunk_frames)}

    def stream(self, wav: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        """``wav [B, n, 1]`` (n a multiple of the hop) -> ``(latents [B, n / hop, D],
        state)``."""
        if wav.shape[1] % self.cfg.hop:
            raise ValueError(f"RawEncoder.stream: a chunk of {wav.shape[1]} samples is not "
                             f"a multiple of the hop {self.cfg.hop}")
        h, conv_in = self.conv_in.stream(wav, state["conv_in"])
        blocks = []
        for block, st in zip(self.blocks, state["blocks"], strict=True):
            h, st = block.stream(h, st)
            blocks.append(st)
        h, conv_out = self.conv_out.stream(self.act(h), state["conv_out"])
        h, tr = self.transformer.stream(h, state["transformer"])
        return h, {"conv_in": conv_in, "blocks": blocks, "conv_out": conv_out,
                   "transformer": tr}


class RawDecoder(nnx.Module):
    """``latents [B, T, latent_dim]``, ``frame_valid [B, T]`` -> ``wav [B, T*hop, 1]``
    in [-1, 1] (zero on padded samples)."""

    def __init__(self, cfg: ConvStackConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pad = "causal" if cfg.causal else "same"
        wn = dict(weight_norm=cfg.weight_norm, kernel_init=TORCH_KERNEL_INIT, dtype=cfg.dtype,
                  rngs=rngs)
        self.transformer = _LatentTransformer(cfg, rngs=rngs)
        self.conv_in = Conv(cfg.latent_dim, cfg.decoder_channels, 7, padding=pad, **wn)
        ups = cfg.strides[::-1]
        chans = [max(cfg.decoder_channels // 2**i, 1) for i in range(len(ups) + 1)]
        self.blocks = nnx.List([
            UpBlock(chans[i], chans[i + 1], s, dilations=cfg.dilations, causal=cfg.causal,
                    weight_norm=cfg.weight_norm, kernel_init=TORCH_KERNEL_INIT,
                    dtype=cfg.dtype, rngs=rngs)
            for i, s in enumerate(ups)])
        self.act = Snake(chans[-1], dtype=cfg.dtype, rngs=rngs)
        self.conv_out = Conv(chans[-1], 1, 7, padding=pad, **wn)

    def __call__(self, latents: jax.Array, valid: jax.Array) -> jax.Array:
        h = self.transformer(latents, valid)
        h = apply_mask(self.conv_in(h), valid)
        for block, s in zip(self.blocks, self.cfg.strides[::-1], strict=True):
            valid = jnp.repeat(valid, s, axis=-1)
            h = block(h, valid)
        wav = jnp.tanh(self.conv_out(self.act(h)).astype(jnp.float32))
        return apply_mask(wav, valid)

    def init_stream(self, batch: int, *, context_frames: int = 1500,
                    max_chunk_frames: int = 64) -> dict:
        """State before the first chunk of up to ``max_chunk_frames`` latent frames."""
        _require_causal(self.cfg)
        return {"transformer": self.transformer.init_stream(batch, context_frames,
                                                            max_chunk_frames),
                "conv_in": self.conv_in.init_stream(batch),
                "blocks": [b.init_stream(batch) for b in self.blocks],
                "conv_out": self.conv_out.init_stream(batch)}

    def stream(self, latents: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        """``latents [B, t, D]`` -> ``(wav [B, t * hop, 1], state)``."""
        h, tr = self.transformer.stream(latents, state["transformer"])
        h, conv_in = self.conv_in.stream(h, state["conv_in"])
        blocks = []
        for block, st in zip(self.blocks, state["blocks"], strict=True):
            h, st = block.stream(h, st)
            blocks.append(st)
        y, conv_out = self.conv_out.stream(self.act(h), state["conv_out"])
        wav = jnp.tanh(y.astype(jnp.float32))
        return wav, {"transformer": tr, "conv_in": conv_in, "blocks": blocks,
                     "conv_out": conv_out}
