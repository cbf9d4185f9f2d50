"""Connectionist temporal classification (Graves et al. 2006) over ``optax.ctc_loss``.

optax takes *padding* indicators (1.0 = padded) and needs labels right-padded; here the
caller passes *valid* masks in any layout: valid labels are packed to the left (their
order kept), padded label slots get id -1 (never a real label, so never a repeat of the
last one), and padded frames' logits are zeroed, so what the padding holds cannot change
the loss or its gradient.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import optax

Reduction = Literal["mean_per_token", "mean", "sum"]
REDUCTIONS = ("mean_per_token", "mean", "sum")


def ctc_loss(
    logits: jax.Array,
    logit_valid: jax.Array,
    labels: jax.Array,
    label_valid: jax.Array,
    *,
    blank_id: int = 0,
    reduction: Reduction = "mean_per_token",
    sequence_valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CTC negative log-likelihood of ``labels`` given per-frame ``logits``.

    logits: ``[B, T, V]`` (unnormalised, float32 inside); logit_valid: bool ``[B, T]``
    (valid frames may sit anywhere, padded frames are skipped); labels: int ``[B, L]``
    (values in ``[0, V)``, never ``blank_id``); label_valid: bool ``[B, L]``.

    ``per_sequence_loss[b] = -log p(labels_b | logits_b)`` (optax; an impossible alignment,
    more labels plus repeats than frames, gives a huge finite value, ~1e5). Sequences
    without a valid frame (batch padding), and those ``sequence_valid`` (bool ``[B]``,
    optional) marks False, are left out: they add nothing to the loss, its gradient or
    the token and sequence counts. (An empty label sequence is a real CTC target, "all
    blank"; a caller whose empty rows mean "no transcript" excludes them here.) With no
    sequence left the loss is 0, and so is its gradient. ``reduction`` (static):

    - ``"mean_per_token"``: sum of the losses / total valid label tokens (token-weighted;
      torch's ``"mean"`` instead averages per-sequence ``loss / length``);
    - ``"mean"``: mean over sequences;
    - ``"sum"``: sum over sequences.

    Returns float32 ``(loss, metrics)``: ``loss``, ``nll_per_token``, ``nll_per_sequence``,
    ``num_tokens``, ``num_sequences`` (sequences included), ``infeasible_frac`` (fraction of
    included sequences too short for their labels),
    ``blank_prob`` (mean blank probability over valid frames) and ``per_sequence_loss``,
    the one non-scalar entry, float32 ``[B]`` (0 for sequences without frames).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    logits = jnp.asarray(logits, jnp.float32)
    logit_valid = jnp.asarray(logit_valid) != 0
    # optax blends padded frames in arithmetically (pad * prev + (1 - pad) * next), and
    # 0 * NaN is NaN: clear them.
    logits = jnp.where(logit_valid[..., None], logits, 0.0)
    label_valid = jnp.asarray(label_valid) != 0
    labels = jnp.asarray(labels, jnp.int32)
    order = jnp.argsort(~label_valid, axis=1, stable=True)  # valid first, order kept
    labels = jnp.take_along_axis(labels, order, axis=1)
    label_valid = jnp.take_along_axis(label_valid, order, axis=1)
    labels = jnp.where(label_valid, labels, -1)

    per_seq = optax.ctc_loss(
        logits, (~logit_valid).astype(jnp.float32), labels,
        (~label_valid).astype(jnp.float32), blank_id=blank_id,
    )
    included = logit_valid.any(axis=1)
    if sequence_valid is not None:
        included = included & (jnp.asarray(sequence_valid) != 0)
    per_seq = jnp.where(included, per_seq, 0.0)
    n_tokens = jnp.sum(jnp.where(included, label_valid.sum(axis=1), 0), dtype=jnp.float32)
    n_seqs = jnp.sum(included, dtype=jnp.float32)
    total = jnp.sum(per_seq)
    per_token = total / jnp.maximum(n_tokens, 1.0)
    per_sequence = total / jnp.maximum(n_seqs, 1.0)
    loss = {"mean_per_token": per_token, "mean": per_sequence, "sum": total}[reduction]

    # Frames needed: one per label plus a blank between each pair of equal neighbours.
    repeats = jnp.sum(label_valid[:, 1:] & (labels[:, 1:] == labels[:, :-1]), axis=1)
    infeasible = included & (label_valid.sum(axis=1) + repeats > logit_valid.sum(axis=1))
    blank_prob = jax.nn.softmax(logits, axis=-1)[..., blank_id]
    blank_mean = jnp.sum(jnp.where(logit_valid, blank_prob, 0.0)) / jnp.maximum(
        jnp.sum(logit_valid, dtype=jnp.float32), 1.0
    )
    return loss, {
        "loss": loss,
        "nll_per_token": per_token,
        "nll_per_sequence": per_sequence,
        "num_tokens": n_tokens,
        "num_sequences": n_seqs,
        "infeasible_frac": jnp.sum(infeasible, dtype=jnp.float32) / jnp.maximum(n_seqs, 1.0),
        "blank_prob": blank_mean,
        "per_sequence_loss": per_seq,
    }
