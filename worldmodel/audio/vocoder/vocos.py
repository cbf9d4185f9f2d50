"""Vocos (Siuzdak 2023, ``vocos==0.1.0``): mel frames -> ConvNeXt backbone at the frame
rate -> STFT magnitude and phase per frame -> iSTFT.

    mel [B, T, n_mels] -> Conv(k7) -> LayerNorm -> ConvNeXtBlock x L -> LayerNorm
        -> Linear(dim, n_fft + 2) -> (log|S|, phase) -> S = exp(log|S|) e^{i phase}
        -> iSTFT (hop = the mel hop) -> wav [B, T * hop]          (padding "same")

A port of ``vocos/models.py`` ``VocosBackbone``, ``vocos/modules.py`` ``ConvNeXtBlock``
and ``vocos/heads.py`` ``ISTFTHead`` (the non-conditional ones: no AdaLayerNorm),
channels-last. The backbone keeps the time resolution; every block is ``x + gamma *
pw2(gelu(pw1(norm(dwconv(x)))))`` (GELU exact, LayerNorm eps 1e-6, layer scale
``gamma`` initialised to ``1 / num_layers``).

Masks: ``valid [B, T]`` marks real frames. Each convolution's input is zeroed on the
invalid frames (what a conv's own zero padding gives an unpadded row), the head's
spectra too, and the iSTFT leaves them out of its window envelope
(``common.audio.frame_istft``); everything else is per frame. So a left-padded row's
waveform equals its unpadded self on the valid samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.audio.frame_istft import frame_istft, sample_mask
from common.nn import axes as ax
from common.nn.conv import Conv
from common.nn.linear import Linear
from common.nn.norms import LayerNorm
from worldmodel.audio.vocoder.config import VocosConfig

# Vocos's _init_weights: trunc_normal_(std=0.02) (torch truncates at +-2 absolute, i.e.
# at 100 std: a plain normal in effect), zero biases; the head keeps torch's default.
_INIT = nnx.initializers.normal(stddev=0.02)
LN_EPS = 1e-6


def _masked(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    return x if valid is None else jnp.where(valid[..., None], x, jnp.zeros((), x.dtype))


class ConvNeXtBlock(nnx.Module):
    """Depthwise conv -> LayerNorm -> Linear -> GELU -> Linear -> layer scale, residual.

    Shapes: ``x [B, T, dim]``, ``valid [B, T]`` or None -> ``[B, T, dim]``.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float, *,
                 kernel_size: int = 7, dtype=None, rngs: nnx.Rngs):
        self.dwconv = Conv(dim, dim, kernel_size, groups=dim, kernel_init=_INIT, dtype=dtype,
                           rngs=rngs)
        self.norm = LayerNorm(dim, eps=LN_EPS, dtype=dtype, rngs=rngs)
        self.pwconv1 = Linear(dim, intermediate_dim, axes=(ax.EMBED, ax.MLP), use_bias=True,
                              kernel_init=_INIT, dtype=dtype, rngs=rngs)
        self.pwconv2 = Linear(intermediate_dim, dim, axes=(ax.MLP, ax.EMBED), use_bias=True,
                              kernel_init=_INIT, dtype=dtype, rngs=rngs)
        self.gamma = ax.param(None, nnx.initializers.constant(layer_scale), (dim,),
                              (ax.EMBED,))

    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        h = self.norm(self.dwconv(_masked(x, valid)))
        h = self.pwconv2(jax.nn.gelu(self.pwconv1(h), approximate=False))
        return x + (self.gamma[...] * h).astype(x.dtype)


class VocosBackbone(nnx.Module):
    """``mel [B, T, n_mels]``, ``valid [B, T]`` or None -> features ``[B, T, dim]``."""

    def __init__(self, cfg: VocosConfig, *, rngs: nnx.Rngs):
        dt = jnp.dtype(cfg.dtype) if cfg.dtype else None
        self.embed = Conv(cfg.n_mels, cfg.dim, cfg.kernel_size, kernel_init=_INIT, dtype=dt,
                          rngs=rngs)
        self.norm = LayerNorm(cfg.dim, eps=LN_EPS, dtype=dt, rngs=rngs)
        scale = cfg.layer_scale_init or 1.0 / cfg.num_layers
        self.convnext = nnx.List([
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, scale, kernel_size=cfg.kernel_size,
                          dtype=dt, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_layer_norm = LayerNorm(cfg.dim, eps=LN_EPS, dtype=dt, rngs=rngs)

    def __call__(self, mel: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        x = self.norm(self.embed(_masked(mel, valid)))
        for block in self.convnext:
            x = block(x, valid)
        return self.final_layer_norm(x)


class ISTFTHead(nnx.Module):
    """``features [B, T, dim]``, ``valid [B, T]`` or None -> ``wav [B, L]`` float32,
    ``L = T * hop`` ("same") or ``(T - 1) * hop`` ("center")."""

    def __init__(self, cfg: VocosConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.out = Linear(cfg.dim, cfg.n_fft + 2, axes=(ax.EMBED, ax.MLP), use_bias=True,
                          rngs=rngs)

    def spectrum(self, x: jax.Array) -> jax.Array:
        """The predicted complex STFT ``[B, T, n_fft // 2 + 1]`` (float32 math)."""
        y = self.out(x.astype(jnp.float32))
        log_mag, phase = jnp.split(y, 2, axis=-1)
        mag = jnp.exp(jnp.minimum(log_mag, self.cfg.max_log_magnitude))
        return jax.lax.complex(mag * jnp.cos(phase), mag * jnp.sin(phase))

    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        c = self.cfg
        return frame_istft(self.spectrum(x), valid, n_fft=c.n_fft, hop_length=c.hop_length,
                           padding=c.padding)


class Vocos(nnx.Module):
    """The vocoder: ``mel [B, T, n_mels]``, ``valid [B, T]`` (or None) -> ``(wav [B, L]
    float32, wav_valid [B, L] bool)``, ``L = T * hop`` ("same") or ``(T - 1) * hop``."""

    def __init__(self, cfg: VocosConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.backbone = VocosBackbone(cfg, rngs=rngs)
        self.head = ISTFTHead(cfg, rngs=rngs)

    def __call__(self, mel: jax.Array, valid: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        wav = self.head(self.backbone(mel, valid), valid)
        if valid is None:
            valid = jnp.ones(mel.shape[:2], bool)
        return wav, sample_mask(valid, self.cfg.hop_length, self.cfg.padding)
