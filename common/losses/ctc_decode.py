"""Greedy (best-path) CTC decoding and its edit distance to the reference, on device.

A training run wants the phoneme error rate of a CTC head in its eval metrics without
shipping per-frame predictions to the host: ``greedy_ctc_errors`` collapses the argmax
path (merge repeats, drop blanks) and computes the Levenshtein distance to the labels
in one ``lax.scan`` over frames, jit- and vmap-friendly.

The distance row over reference prefixes is updated per hypothesis symbol with the
usual recurrence ``d[j] = min(d'[j] + 1, d[j-1] + 1, d'[j-1] + (h != r_j))``; the
left-to-right dependency is removed with a running minimum:
``d[j] = j + cummin_k<=j (t[k] - k)`` where ``t[j] = min(d'[j] + 1, d'[j-1] + cost_j)``
(and ``t[0] = d'[0] + 1``), so each step is a few vector ops of length ``L + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def greedy_ctc_path(frame_ids: jax.Array, frame_valid: jax.Array,
                    blank_id: int = 0) -> jax.Array:
    """``frame_ids int [B, T]``, ``frame_valid bool [B, T]`` -> bool ``[B, T]``: the
    frames whose id is emitted by best-path decoding (valid, not blank, not a repeat of
    the previous valid frame's id)."""
    valid = jnp.asarray(frame_valid) != 0
    # The previous *valid* frame's id (left padding sits before the first valid frame).
    prev = jnp.concatenate([jnp.full_like(frame_ids[:, :1], -1), frame_ids[:, :-1]], axis=1)
    prev_valid = jnp.concatenate([jnp.zeros_like(valid[:, :1]), valid[:, :-1]], axis=1)
    prev = jnp.where(prev_valid, prev, -1)
    return valid & (frame_ids != blank_id) & (frame_ids != prev)


def greedy_ctc_errors(logits: jax.Array, frame_valid: jax.Array, labels: jax.Array,
                      label_valid: jax.Array, *, blank_id: int = 0
                      ) -> tuple[jax.Array, jax.Array]:
    """Edit distance of the greedy CTC decoding of ``logits [B, T, V]`` to ``labels
    [B, L]`` (``label_valid [B, L]``, valid labels anywhere, order kept).

    Returns ``(edits int32 [B], ref_len int32 [B])``; PER = ``sum(edits) / sum(ref_len)``.
    Sequences without valid frames decode to nothing (edits = ref_len)."""
    ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    emit = greedy_ctc_path(ids, frame_valid, blank_id)
    label_valid = jnp.asarray(label_valid) != 0
    order = jnp.argsort(~label_valid, axis=1, stable=True)
    labels = jnp.take_along_axis(jnp.asarray(labels, jnp.int32), order, axis=1)
    label_valid = jnp.take_along_axis(label_valid, order, axis=1)
    ref_len = jnp.sum(label_valid, axis=1, dtype=jnp.int32)
    return jax.vmap(_edit_distance)(ids, emit, labels, ref_len), ref_len


def phoneme_metrics(logits: jax.Array, frame_valid: jax.Array, phonemes: jax.Array,
                    phonemes_valid: jax.Array) -> dict[str, jax.Array]:
    """How CTC logits read as phonemes (no gradient; the alpha codec's stage-1 stream,
    SIVE's head): ``per``, the greedy
    phoneme error rate of the batch (NaN without a transcript: a cropped batch has no
    rate, not a rate of 0), ``per_num`` / ``per_den`` (its edits and reference phonemes,
    from which the loop's evaluation forms the rate over all eval batches), and
    ``nonblank``, the share of valid frames whose code is not the blank (0 in CTC's
    all-blank first phase). Rows without a transcript (crops) are left out."""
    logits = jax.lax.stop_gradient(logits)
    edits, ref_len = greedy_ctc_errors(logits, frame_valid, phonemes, phonemes_valid)
    edits = jnp.where(jnp.any(phonemes_valid, axis=-1), edits, 0)
    fv = frame_valid.astype(jnp.float32)
    nonblank = jnp.sum((jnp.argmax(logits, -1) != 0) * fv) / jnp.maximum(jnp.sum(fv), 1.0)
    num = jnp.sum(edits).astype(jnp.float32)
    den = jnp.sum(ref_len).astype(jnp.float32)
    per = jnp.where(den > 0, num / jnp.maximum(den, 1.0), jnp.nan)
    return {"per": per, "per_num": num, "per_den": den, "nonblank": nonblank}


def _edit_distance(hyp: jax.Array, emit: jax.Array, ref: jax.Array,
                   ref_len: jax.Array) -> jax.Array:
    """One sequence: hypothesis = ``hyp [T]`` where ``emit [T]``; reference = the first
    ``ref_len`` of ``ref [L]``."""
    n = ref.shape[0]
    j = jnp.arange(n + 1, dtype=jnp.int32)

    def step(row, x):
        h, keep = x
        cost = (ref != h).astype(jnp.int32)  # [L]
        t = jnp.concatenate([row[:1] + 1, jnp.minimum(row[1:] + 1, row[:-1] + cost)])
        new = j + jax.lax.cummin(t - j)
        return jnp.where(keep, new, row), None

    row, _ = jax.lax.scan(step, j, (hyp, emit))
    return row[ref_len]


# ---------------------------------------------------------------- host (plain Python)
# The same decoding and distance one utterance at a time: what host-side evaluations
# use, and the reference the device versions are tested against.


def ctc_greedy(frame_ids: Sequence[int], blank: int = 0) -> list[int]:
    """Best-path CTC decoding: merge repeated ids, then drop blanks."""
    out, prev = [], None
    for i in map(int, frame_ids):
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]
