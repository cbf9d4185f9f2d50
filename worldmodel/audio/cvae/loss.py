"""The audio CVAE's loss: mel reconstruction (L1 + L2 over the valid frames) plus the
KL of the latent posterior to N(0, I), weighted by a linear warm-up and with optional
free bits (``common.losses.kl.gaussian_kl``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.losses.kl import gaussian_kl
from common.losses.regression import l1_loss, l2_loss
from worldmodel.audio.cvae.config import CvaeLossConfig
from worldmodel.audio.cvae.model import CvaeOutput


def kl_weight(step: jax.Array, cfg: CvaeLossConfig) -> jax.Array:
    """``kl_weight * min(step / kl_warmup_steps, 1)``."""
    ramp = jnp.asarray(step, jnp.float32) / max(cfg.kl_warmup_steps, 1)
    return cfg.kl_weight * jnp.clip(ramp, 0.0, 1.0)


def cvae_loss(out: CvaeOutput, mel: jax.Array, valid: jax.Array, step: jax.Array,
              cfg: CvaeLossConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``l1_weight * L1 + l2_weight * L2 + kl_weight(step) * KL`` and its terms; ``mel,
    out.mel [B, T, F]`` compared on ``valid [B, T]`` frames, the KL over
    ``out.latent_valid``."""
    mask = valid[..., None]
    l1, _ = l1_loss(out.mel, mel, mask)
    l2, _ = l2_loss(out.mel, mel, mask)
    kl, km = gaussian_kl(out.mean, out.logvar, out.latent_valid, free_bits=cfg.free_bits)
    w = kl_weight(step, cfg)
    loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + w * kl
    return loss, {"cvae/mel_l1": l1, "cvae/mel_l2": l2, "cvae/kl": km["kl"],
                  "cvae/kl_weight": w, "cvae/kl_dim_max": km["kl_dim_max"]}
