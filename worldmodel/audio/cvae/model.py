"""The audio CVAE: a mel spectrogram through a latent sequence and back, conditioned on
what is said (SIVE's content features), how it is intoned (F0) and who says it (a
speaker embedding, by FiLM).

    encoder:  mel [B, T, F] -> Conv k/2 -> GELU -> Conv k/2 -> GELU -> Linear
              -> mean, logvar [B, T4, Z]   (logvar clamped; T4 = SIVE's frame grid)
    decoder:  [z ; content] [B, T4, Z + C] -> Linear -> repeat to the mel rate
              (+ Linear([log F0 - mean ; voiced]) per mel frame)
              -> L x (LayerNorm -> FiLM(speaker) -> Conv k -> GELU, residual)
              -> LayerNorm -> Linear -> mel [B, T, F]

Frame grids: a mel of ``T = 4k + 1`` frames (the pipeline pads audio to whole steps of
4 hops) has ``T4 = k + 1`` latent and content frames, latent frame ``i`` centred on mel
frame ``4 i`` (the valid mask of both is ``valid[:, ::4]``, as in SIVE's front end);
mel frame ``j`` reads latent frame ``(j + 2) // 4``, the one whose 4-frame span holds
it. Padding frames are zeroed after every layer and the frame grid is the same for a
row left-padded by a multiple of 4 frames, so such a row equals its unpadded self.

F0 enters as ``log F0`` minus its mean over the utterance's voiced frames (the
contour, not the register: the register is the speaker's, and comes from FiLM, so a
converted voice takes the target's pitch level) and the voicing flag.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.conv import Conv
from common.nn.film import FiLM
from common.nn.linear import Linear
from common.nn.norms import LayerNorm
from worldmodel.audio.cvae.config import CvaeModelConfig

SUBSAMPLING = 4


@dataclasses.dataclass(frozen=True)
class CvaeOutput:
    """``mel [B, T, F]`` (the reconstruction), the posterior's ``mean, logvar
    [B, T4, Z]`` and their ``latent_valid [B, T4]``."""

    mel: jax.Array
    mean: jax.Array
    logvar: jax.Array
    latent_valid: jax.Array


def latent_valid(valid: jax.Array) -> jax.Array:
    """``valid [B, T]`` mel frames -> ``[B, ceil(ceil(T / 2) / 2)]`` latent frames."""
    return valid[:, ::2][:, ::2]


def upsample_frames(x: jax.Array, length: int) -> jax.Array:
    """``x [B, T4, C]`` -> ``[B, length, C]``: mel frame ``j`` takes frame
    ``(j + 2) // 4``."""
    idx = jnp.clip((jnp.arange(length) + SUBSAMPLING // 2) // SUBSAMPLING, 0, x.shape[1] - 1)
    return jnp.take(x, idx, axis=1)


def f0_features(f0: jax.Array, voiced: jax.Array) -> jax.Array:
    """``f0 [B, T]`` Hz and ``voiced [B, T]`` -> ``[B, T, 2]``: log F0 minus its mean
    over the row's voiced frames (0 where unvoiced), and voicing as 0/1."""
    v = voiced & (f0 > 0)
    logf = jnp.log(jnp.where(v, f0, 1.0))
    n = jnp.maximum(jnp.sum(v, axis=1, keepdims=True), 1)
    mean = jnp.sum(jnp.where(v, logf, 0.0), axis=1, keepdims=True) / n
    return jnp.stack([jnp.where(v, logf - mean, 0.0), v.astype(jnp.float32)], axis=-1)


def _masked(x: jax.Array, valid: jax.Array) -> jax.Array:
    return jnp.where(valid[..., None], x, 0.0)


class DecoderBlock(nnx.Module):
    """``h + GELU(Conv(FiLM(LayerNorm(h), speaker)))`` on the valid frames."""

    def __init__(self, cfg: CvaeModelConfig, *, rngs: nnx.Rngs):
        self.norm = LayerNorm(cfg.channels, rngs=rngs)
        self.film = FiLM(cfg.speaker_dim, cfg.channels, hidden=cfg.film_hidden,
                         bound=cfg.film_bound, rngs=rngs)
        self.conv = Conv(cfg.channels, cfg.channels, cfg.kernel_size, rngs=rngs)

    def __call__(self, h: jax.Array, valid: jax.Array, speaker: jax.Array) -> jax.Array:
        y = self.film(self.norm(h), speaker)
        return _masked(h + jax.nn.gelu(self.conv(_masked(y, valid))), valid)


class AudioCvae(nnx.Module):
    """See the module docstring.

    Shapes: ``mel [B, T, n_mels]``, ``valid [B, T]``, ``content [B, T4, content_dim]``,
    ``f0, voiced [B, T]`` (ignored without ``cfg.f0``), ``speaker [B, speaker_dim]``.
    """

    def __init__(self, cfg: CvaeModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c1, c2 = cfg.encoder_channels
        k = cfg.kernel_size
        self.enc1 = Conv(cfg.n_mels, c1, k, stride=2, rngs=rngs)
        self.enc2 = Conv(c1, c2, k, stride=2, rngs=rngs)
        self.stats = Linear(c2, (2, cfg.latent_dim), axes=(ax.EMBED, None, ax.MLP),
                            use_bias=True, rngs=rngs)
        self.dec_in = Linear(cfg.latent_dim + cfg.content_dim, cfg.channels,
                             axes=(ax.MLP, ax.EMBED), use_bias=True, rngs=rngs)
        self.f0_in = (Linear(2, cfg.channels, axes=(None, ax.EMBED), use_bias=True,
                             rngs=rngs) if cfg.f0 else None)
        self.blocks = nnx.List([DecoderBlock(cfg, rngs=rngs)
                                for _ in range(cfg.decoder_layers)])
        self.out_norm = LayerNorm(cfg.channels, rngs=rngs)
        self.out = Linear(cfg.channels, cfg.n_mels, axes=(ax.EMBED, ax.MLP), use_bias=True,
                          rngs=rngs)

    def encode(self, mel: jax.Array, valid: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(mean, logvar [B, T4, Z], latent_valid [B, T4])``."""
        cfg = self.cfg
        if mel.shape[-1] != cfg.n_mels or valid.shape != mel.shape[:2]:
            raise ValueError(f"AudioCvae expects mel [B, T, {cfg.n_mels}] and valid [B, T], "
                             f"got {mel.shape} and {valid.shape}")
        v2 = valid[:, ::2]
        v4 = v2[:, ::2]
        x = _masked(mel.astype(jnp.float32), valid)
        x = _masked(jax.nn.gelu(self.enc1(x)), v2)
        x = _masked(jax.nn.gelu(self.enc2(x)), v4)
        stats = self.stats(x)
        mean = _masked(stats[..., 0, :], v4)
        logvar = _masked(jnp.clip(stats[..., 1, :], cfg.logvar_min, cfg.logvar_max), v4)
        return mean, logvar, v4

    def decode(self, z: jax.Array, content: jax.Array, valid: jax.Array,
               speaker: jax.Array, f0: jax.Array | None = None,
               voiced: jax.Array | None = None) -> jax.Array:
        """``z [B, T4, Z]``, ``content [B, T4, C]``, mel-rate ``valid [B, T]`` ->
        ``mel [B, T, n_mels]`` (zero on padding)."""
        t4 = latent_valid(valid).shape[1]
        if z.shape[1] != t4 or content.shape[1] != t4:
            raise ValueError(f"AudioCvae.decode: {valid.shape[1]} mel frames need {t4} "
                             f"latent and content frames, got {z.shape[1]} and "
                             f"{content.shape[1]}")
        h = self.dec_in(jnp.concatenate([z, content.astype(z.dtype)], axis=-1))
        h = upsample_frames(h, valid.shape[1])
        if self.f0_in is not None:
            if f0 is None or voiced is None:
                raise ValueError("AudioCvae.decode: this model reads F0 (cfg.f0); give "
                                 "f0 and voiced")
            h = h + self.f0_in(f0_features(f0, voiced & valid))
        h = _masked(h, valid)
        for block in self.blocks:
            h = block(h, valid, speaker)
        return _masked(self.out(self.out_norm(h)), valid)

    def __call__(self, mel: jax.Array, valid: jax.Array, content: jax.Array,
                 speaker: jax.Array, f0: jax.Array | None = None,
                 voiced: jax.Array | None = None, *, key: jax.Array | None = None
                 ) -> CvaeOutput:
        """Reconstruct ``mel`` through a latent sample (``key``) or the posterior mean
        (``key`` None: evaluation)."""
        mean, logvar, v4 = self.encode(mel, valid)
        z = mean
        if key is not None:
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
            z = _masked(z, v4)
        return CvaeOutput(self.decode(z, content, valid, speaker, f0, voiced), mean, logvar,
                          v4)
