"""GAN losses for (multi-)discriminators: hinge, least-squares, feature matching.

Every function takes one logits array or a list of them (one per discriminator; a
multi-period / multi-scale / multi-band discriminator is a list). Each discriminator's
terms are means over its logits; the total **sums** over discriminators, as HiFi-GAN
(``discriminator_loss`` / ``generator_loss`` / ``feature_loss``) and DAC (``GANLoss``) do,
so adding a discriminator adds a term rather than re-weighting the others.

``masks`` (optional, one per discriminator, bool/0-1 broadcastable to that
discriminator's logits) drop padded logits from the means; real and fake logits of one
discriminator share a mask. Metrics are per discriminator, keyed ``d<i>/...``. Everything
is computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from common.losses.regression import abs_sign_grad, masked_mean, zero_invalid

Logits = jax.Array | Sequence[jax.Array]


def _as_list(logits: Logits) -> list[jax.Array]:
    if isinstance(logits, (list, tuple)):
        return [jnp.asarray(x, jnp.float32) for x in logits]
    return [jnp.asarray(logits, jnp.float32)]


def _masks(masks, n: int) -> list:
    if masks is None:
        return [None] * n
    masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    if len(masks) != n:
        raise ValueError(f"got {len(masks)} masks for {n} discriminators")
    return masks


def _d_loss(real_logits, fake_logits, masks, real_term, fake_term):
    reals, fakes = _as_list(real_logits), _as_list(fake_logits)
    if len(reals) != len(fakes):
        raise ValueError(f"{len(reals)} real vs {len(fakes)} fake discriminator outputs")
    metrics: dict[str, jax.Array] = {}
    real_total, fake_total = jnp.float32(0.0), jnp.float32(0.0)
    for i, (r, f, m) in enumerate(zip(reals, fakes, _masks(masks, len(reals)), strict=True)):
        r, f = zero_invalid(r, m), zero_invalid(f, m)
        lr, lf = masked_mean(real_term(r), m), masked_mean(fake_term(f), m)
        metrics[f"d{i}/real_loss"], metrics[f"d{i}/fake_loss"] = lr, lf
        metrics[f"d{i}/real_logit_mean"] = masked_mean(r, m)
        metrics[f"d{i}/fake_logit_mean"] = masked_mean(f, m)
        real_total, fake_total = real_total + lr, fake_total + lf
    loss = real_total + fake_total
    return loss, {"loss": loss, "real_loss": real_total, "fake_loss": fake_total, **metrics}


def _g_loss(fake_logits, masks, term):
    fakes = _as_list(fake_logits)
    metrics: dict[str, jax.Array] = {}
    total = jnp.float32(0.0)
    for i, (f, m) in enumerate(zip(fakes, _masks(masks, len(fakes)), strict=True)):
        f = zero_invalid(f, m)
        lf = masked_mean(term(f), m)
        metrics[f"d{i}/gen_loss"] = lf
        metrics[f"d{i}/fake_logit_mean"] = masked_mean(f, m)
        total = total + lf
    return total, {"loss": total, **metrics}


def hinge_d_loss(
    real_logits: Logits, fake_logits: Logits, *, masks=None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge discriminator loss: ``sum_d mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``.

    real_logits, fake_logits: arrays ``[B, ...]`` or equal-length lists of them (shapes may
    differ between discriminators). Returns ``(loss, metrics)``: ``loss``, ``real_loss``,
    ``fake_loss``, and ``d<i>/real_loss``, ``d<i>/fake_loss``, ``d<i>/real_logit_mean``,
    ``d<i>/fake_logit_mean``.
    """
    return _d_loss(real_logits, fake_logits, masks,
                   lambda r: jax.nn.relu(1.0 - r), lambda f: jax.nn.relu(1.0 + f))


def hinge_g_loss(fake_logits: Logits, *, masks=None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge generator loss: ``sum_d -mean(D(G(z)))``.

    Returns ``(loss, metrics)``: ``loss``, ``d<i>/gen_loss``, ``d<i>/fake_logit_mean``.
    """
    return _g_loss(fake_logits, masks, lambda f: -f)


def lsgan_d_loss(
    real_logits: Logits, fake_logits: Logits, *, masks=None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Least-squares discriminator loss (LSGAN as in MelGAN / HiFi-GAN / DAC).

    ``sum_d mean((1 - D(x))^2) + mean(D(G(z))^2)``. Shapes and metrics as ``hinge_d_loss``.
    """
    return _d_loss(real_logits, fake_logits, masks,
                   lambda r: jnp.square(1.0 - r), lambda f: jnp.square(f))


def lsgan_g_loss(fake_logits: Logits, *, masks=None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Least-squares generator loss: ``sum_d mean((1 - D(G(z)))^2)``.

    Metrics as ``hinge_g_loss``.
    """
    return _g_loss(fake_logits, masks, lambda f: jnp.square(1.0 - f))


def feature_matching_loss(
    real_feats: Sequence[Sequence[jax.Array]], fake_feats: Sequence[Sequence[jax.Array]],
    *, masks: Sequence[Sequence[jax.Array | None]] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Discriminator feature matching, DAC's normalisation (``GANLoss.generator_loss``).

    real_feats, fake_feats: one list per discriminator of its intermediate feature maps
    (any shapes, equal between real and fake; leave the final logits out if, like DAC,
    they should not be matched). ``loss = sum_d sum_l mean|fake_dl - stop_gradient(real_dl)|``:
    summed over layers and discriminators, each map's L1 a mean over its elements. HiFi-GAN
    has the same sum and multiplies by 2; DAC puts its weight (2.0) in the loss lambdas.
    Real features are constants (no gradient flows into the real branch).

    masks (optional): the same nesting as the features, one bool/0-1 array (or None) per
    map, broadcastable to it (e.g. ``[B, T, 1]`` for a ``[B, T, C]`` map); each map's
    mean is then over its valid elements only.

    Returns ``(loss, {"loss", "d<i>/feature_l1"})``.
    """
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real vs {len(fake_feats)} fake discriminators")
    if masks is not None and len(masks) != len(real_feats):
        raise ValueError(f"got masks for {len(masks)} of {len(real_feats)} discriminators")
    metrics: dict[str, jax.Array] = {}
    total = jnp.float32(0.0)
    for i, (reals, fakes) in enumerate(zip(real_feats, fake_feats, strict=True)):
        if len(reals) != len(fakes):
            raise ValueError(f"discriminator {i}: {len(reals)} real vs {len(fakes)} fake maps")
        map_masks = [None] * len(reals) if masks is None else list(masks[i])
        if len(map_masks) != len(reals):
            raise ValueError(f"discriminator {i}: {len(map_masks)} masks for {len(reals)} maps")
        d_total = jnp.float32(0.0)
        for j, (r, f, m) in enumerate(zip(reals, fakes, map_masks, strict=True)):
            if r.shape != f.shape:
                raise ValueError(f"discriminator {i} map {j}: {r.shape} vs {f.shape}")
            r = jax.lax.stop_gradient(jnp.asarray(r, jnp.float32))
            diff = zero_invalid(jnp.asarray(f, jnp.float32) - r, m)
            d_total = d_total + masked_mean(abs_sign_grad(diff), m)
        metrics[f"d{i}/feature_l1"] = d_total
        total = total + d_total
    return total, {"loss": total, **metrics}
