"""The discriminator's loss over the codec's sub-discriminators, with named metrics.

``common.train.gan`` trains with the same objective (``GANConfig.loss``); this module
gives it per sub-discriminator names (``mpd2/real_loss``, ``stft512/fake_loss``, ...)
for evaluation, benchmarks and tests. Pure and jit-friendly.
"""

from __future__ import annotations

import jax

from common.losses.adversarial import hinge_d_loss, lsgan_d_loss

_D_LOSSES = {"lsgan": lsgan_d_loss, "hinge": hinge_d_loss}


def discriminator_loss(real_logits: list[jax.Array], fake_logits: list[jax.Array], *,
                       kind: str = "lsgan", names: list[str] | None = None,
                       masks: list[jax.Array] | None = None
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sum over sub-discriminators of LSGAN ``mean (1 - D(real))^2 + mean D(fake)^2`` or
    hinge ``mean relu(1 - D(real)) + mean relu(1 + D(fake))``.

    ``real_logits`` / ``fake_logits``: one array per sub-discriminator (any shapes, equal
    pairwise); ``names``: their metric names (``Discriminator.names()``), default
    ``d0, d1, ...``; ``masks``: their valid positions (``Discriminator.masks``), means
    over those only (None: all). Returns ``(loss, metrics)`` with ``real_loss``, ``fake_loss`` and
    ``<name>/real_loss``, ``<name>/fake_loss``, ``<name>/real_logit_mean``, ... ."""
    if kind not in _D_LOSSES:
        raise ValueError(f"discriminator loss kind must be one of {sorted(_D_LOSSES)}, "
                         f"got {kind!r}")
    loss, metrics = _D_LOSSES[kind](real_logits, fake_logits, masks=masks)
    if names is not None:
        if len(names) != len(real_logits):
            raise ValueError(f"{len(names)} names for {len(real_logits)} discriminators")
        for i, name in enumerate(names):
            for key in [k for k in metrics if k.startswith(f"d{i}/")]:
                metrics[name + key[len(f"d{i}"):]] = metrics.pop(key)
    return loss, metrics
