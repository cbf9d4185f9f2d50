"""The image VAE's loss: pixel L1 / L2, optionally ``1 - SSIM`` (a structural loss with
no downloaded network), plus the KL of the posterior to N(0, I) under a linear warm-up
and optional free bits; and PSNR, the reconstruction's headline metric."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.losses.kl import gaussian_kl
from common.losses.regression import l1_loss, l2_loss
from common.losses.ssim import ssim_loss
from worldmodel.image.vae.config import ImageVaeLossConfig
from worldmodel.image.vae.model import ImageVaeOutput

DATA_RANGE = 2.0  # images are in [-1, 1]
SSIM_WINDOW = 11  # the Gaussian window of Wang et al. (sigma 1.5)


def kl_weight(step: jax.Array, cfg: ImageVaeLossConfig) -> jax.Array:
    """``kl_weight * min(step / kl_warmup_steps, 1)`` (no warm-up: the full weight)."""
    if not cfg.kl_warmup_steps:
        return jnp.float32(cfg.kl_weight)
    ramp = jnp.asarray(step, jnp.float32) / cfg.kl_warmup_steps
    return cfg.kl_weight * jnp.clip(ramp, 0.0, 1.0)


def psnr(pred: jax.Array, target: jax.Array, data_range: float = DATA_RANGE) -> jax.Array:
    """Peak signal-to-noise ratio per image, dB: ``10 log10(range^2 / MSE)``;
    ``pred, target [B, H, W, C]`` -> ``[B]`` (the prediction clipped to the range first,
    as a saved image would be)."""
    lo = -data_range / 2
    pred = jnp.clip(pred.astype(jnp.float32), lo, lo + data_range)
    mse = jnp.mean(jnp.square(pred - target.astype(jnp.float32)), axis=(1, 2, 3))
    return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-10))


def image_vae_loss(out: ImageVaeOutput, image: jax.Array, step: jax.Array,
                   cfg: ImageVaeLossConfig, *, ssim_metric: bool = True
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``l1 * L1 + l2 * L2 + ssim * (1 - SSIM) + kl_weight(step) * KL`` and its terms;
    ``image, out.image [B, H, W, C]`` in [-1, 1], the KL over every latent position.
    ``ssim_metric=False`` leaves SSIM out of the metrics when it is not a loss term (its
    11x11 window is a slow depthwise conv on CPU: the recurrent VAE reports it once)."""
    l1, _ = l1_loss(out.image, image)
    l2, _ = l2_loss(out.image, image)
    kl, km = gaussian_kl(out.mean, out.logvar, free_bits=cfg.free_bits)
    w = kl_weight(step, cfg)
    loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + w * kl
    metrics = {"vae/l1": l1, "vae/l2": l2, "vae/kl": km["kl"], "vae/kl_weight": w,
               "vae/kl_dim_max": km["kl_dim_max"], "vae/psnr": jnp.mean(psnr(out.image, image))}
    # SSIM's 11-pixel window needs images at least that large (8 px digits are not):
    # then it is neither a metric nor, unless asked for (an error), a loss.
    if cfg.ssim_weight or (ssim_metric and min(image.shape[1:3]) >= SSIM_WINDOW):
        structural, sm = ssim_loss(out.image, image, data_range=DATA_RANGE,
                                   window_size=SSIM_WINDOW)
        loss = loss + cfg.ssim_weight * structural
        metrics["vae/ssim"] = sm["ssim"]
    return loss, metrics
