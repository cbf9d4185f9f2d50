"""CTC against an independent float64 numpy forward (alpha) recursion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.losses import ctc_loss
from tests.helpers import assert_close

B, T, V = 4, 10, 6
# Jitted once per shape: much faster than eager dispatch of optax's scan.
jctc = jax.jit(ctc_loss, static_argnames=("blank_id", "reduction"))


def ref_ctc_nll(logits: np.ndarray, labels: list[int], blank: int) -> float:
    """-log p(labels | logits) for one sequence, ``logits`` ``[T, V]`` (valid frames only).

    Graves et al. 2006: alpha recursion over the blank-extended label sequence
    ``[blank, l1, blank, l2, ..., blank]`` in log space.
    """
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    ext = [blank]
    for lab in labels:
        ext += [lab, blank]
    n_ext = len(ext)
    alpha = np.full(n_ext, -np.inf)
    alpha[0] = logp[0, blank]
    if n_ext > 1:
        alpha[1] = logp[0, ext[1]]
    for t in range(1, logits.shape[0]):
        new = np.full(n_ext, -np.inf)
        for s in range(n_ext):
            a = alpha[s]
            if s >= 1:
                a = np.logaddexp(a, alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a = np.logaddexp(a, alpha[s - 2])
            new[s] = a + logp[t, ext[s]]
        alpha = new
    ll = alpha[-1] if n_ext == 1 else np.logaddexp(alpha[-1], alpha[-2])
    return -ll


def make_batch(rng, blank=0):
    """Padded batch: right- and left-padded frames, a repeated label, an empty label
    sequence, left-padded labels, and padded label slots holding real ids."""
    non_blank = [v for v in range(V) if v != blank]
    logits = rng.normal(0.0, 2.0, (B, T, V))
    frame_valid = np.zeros((B, T), bool)
    frame_valid[0, :] = True  # full
    frame_valid[1, :7] = True  # right padded
    frame_valid[2, 2:] = True  # left padded
    frame_valid[3, :6] = True
    seqs = [[non_blank[0], non_blank[1], non_blank[2]],
            [non_blank[1], non_blank[1], non_blank[3]],  # repeated symbol
            [non_blank[4]],
            []]
    labels = np.zeros((B, 4), np.int64)
    label_valid = np.zeros((B, 4), bool)
    labels[0, :3], label_valid[0, :3] = seqs[0], True
    labels[1] = [*seqs[1], seqs[1][-1]]  # the padded slot repeats the last label
    label_valid[1, :3] = True
    labels[2] = [non_blank[2], non_blank[2], non_blank[2], seqs[2][0]]  # left padded
    label_valid[2, 3] = True
    labels[3] = non_blank[:4]  # all padding
    refs = np.array([ref_ctc_nll(logits[b][frame_valid[b]], seqs[b], blank) for b in range(B)])
    return logits, frame_valid, labels, label_valid, seqs, refs


@pytest.mark.parametrize("blank", [0, V - 1])
def test_matches_reference_per_sequence_and_reductions(blank, rng):
    logits, fv, labels, lv, seqs, refs = make_batch(rng, blank)
    n_tokens = sum(len(s) for s in seqs)
    expected = {"mean_per_token": refs.sum() / n_tokens, "mean": refs.mean(), "sum": refs.sum()}
    # The reductions only re-weight the same sums: all three once, then one per blank id.
    for reduction, ref in expected.items() if blank == 0 else [("mean", expected["mean"])]:
        loss, metrics = jctc(logits.astype(np.float32), fv, labels, lv, blank_id=blank,
                                 reduction=reduction)
        assert_close(loss, ref, 1e-4)
        assert_close(metrics["per_sequence_loss"], refs, 1e-4)
        assert_close(metrics["nll_per_token"], expected["mean_per_token"], 1e-4)
        assert_close(metrics["nll_per_sequence"], expected["mean"], 1e-4)
        assert float(metrics["num_tokens"]) == n_tokens
        assert float(metrics["infeasible_frac"]) == 0.0
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        assert_close(metrics["blank_prob"], probs[..., blank][fv].mean(), 1e-5)
    assert set(metrics) == {"loss", "nll_per_token", "nll_per_sequence", "num_tokens",
                            "num_sequences", "infeasible_frac", "blank_prob",
                            "per_sequence_loss"}
    assert float(metrics["num_sequences"]) == B
    assert metrics["per_sequence_loss"].shape == (B,)
    assert all(v.dtype == jnp.float32 for v in metrics.values())


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_padding_does_not_change_the_loss(rng):
    logits, fv, labels, lv, _, refs = make_batch(rng)
    base, base_m = jctc(logits, fv, labels, lv)
    # Other contents in the padded frames and label slots (NaN logits; real ids that
    # repeat the last label), and more of both.
    logits2 = np.where(fv[..., None], logits, np.nan)
    logits2 = np.concatenate([logits2, rng.normal(0, 9, (B, 5, V))], axis=1)
    fv2 = np.concatenate([fv, np.zeros((B, 5), bool)], axis=1)
    labels2 = np.concatenate([np.where(lv, labels, 1), np.full((B, 2), 2)], axis=1)
    lv2 = np.concatenate([lv, np.zeros((B, 2), bool)], axis=1)
    loss, metrics = jctc(logits2, fv2, labels2, lv2)
    assert_close(loss, base, 1e-5)
    assert_close(metrics["per_sequence_loss"], base_m["per_sequence_loss"], 1e-5)
    assert_close(metrics["per_sequence_loss"], refs, 1e-4)
    grad = jax.jit(jax.grad(lambda x: ctc_loss(x, fv2, labels2, lv2)[0]))
    g = grad(jnp.asarray(logits2, jnp.float32))
    assert np.isfinite(g).all() and not np.asarray(g)[~fv2].any()
    # A batch row with no valid frame is left out of the means.
    fv3 = np.concatenate([fv, np.zeros((1, T), bool)])
    args3 = (np.concatenate([logits, logits[:1]]), fv3, np.concatenate([labels, labels[:1]]),
             np.concatenate([lv, lv[:1]]))
    loss3, m3 = jctc(*args3, reduction="mean")
    assert_close(loss3, refs.mean(), 1e-4)
    assert float(m3["per_sequence_loss"][-1]) == 0.0 and float(m3["num_tokens"]) == 7


def test_excluded_sequences_are_left_out(rng):
    """``sequence_valid`` False rows (e.g. cropped utterances, whose transcript no longer
    matches) add nothing: the loss is the reference over the others; with every row
    excluded the loss is 0 and finite."""
    logits, fv, labels, lv, seqs, refs = make_batch(rng)
    include = np.array([True, False, True, False])
    loss, m = jctc(logits, fv, labels, lv, sequence_valid=include)
    n_tokens = sum(len(s) for s, k in zip(seqs, include, strict=True) if k)
    assert_close(loss, refs[include].sum() / n_tokens, 1e-4)
    assert float(m["num_sequences"]) == 2 and float(m["num_tokens"]) == n_tokens
    assert_close(m["per_sequence_loss"], np.where(include, refs, 0.0), 1e-4)
    loss0, m0 = jctc(logits, fv, labels, lv, sequence_valid=np.zeros(B, bool))
    assert float(loss0) == 0.0 and float(m0["num_sequences"]) == 0.0
    assert float(m0["infeasible_frac"]) == 0.0 and float(m0["nll_per_sequence"]) == 0.0


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_excluded_sequences_get_no_gradient(rng):
    logits, fv, labels, lv, _, _ = make_batch(rng)
    grad = jax.jit(jax.grad(lambda x, k: ctc_loss(x, fv, labels, lv, sequence_valid=k)[0]))
    include = np.array([True, False, True, False])
    g = np.asarray(grad(jnp.asarray(logits, jnp.float32), include))
    assert np.isfinite(g).all() and not g[~include].any() and np.abs(g[include]).max() > 0
    none = np.zeros(B, bool)
    g0 = np.asarray(grad(jnp.asarray(logits, jnp.float32), none))
    assert np.isfinite(g0).all() and not g0.any()
    for reduction in ("mean", "sum"):
        assert float(jctc(logits, fv, labels, lv, sequence_valid=none,
                          reduction=reduction)[0]) == 0.0


def test_infeasible_alignment_is_flagged(rng):
    logits = rng.normal(size=(2, 4, V))
    fv = np.array([[True, True, False, False], [True, True, True, False]])
    labels = np.array([[1, 1], [1, 1]])  # needs 3 frames: [1, blank, 1]
    _, metrics = jctc(logits, fv, labels, np.ones((2, 2), bool))
    assert float(metrics["infeasible_frac"]) == 0.5
    per_seq = np.asarray(metrics["per_sequence_loss"])
    assert per_seq[0] > 1e3 and np.isfinite(per_seq).all()
    assert_close(per_seq[1], ref_ctc_nll(logits[1, :3], [1, 1], 0), 1e-4)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_jit_grad_bf16(rng):
    logits, fv, labels, lv, seqs, _ = make_batch(rng)
    logits = jnp.asarray(logits, jnp.float32)
    assert_close(jctc(logits, fv, labels, lv, reduction="sum")[0],
                 ctc_loss(logits, fv, labels, lv, reduction="sum")[0], 1e-6)
    g = jax.jit(jax.grad(lambda x: ctc_loss(x, fv, labels, lv)[0]))(logits)
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    # Each valid frame's gradient w.r.t. its logits sums to 0 (softmax), scaled by 1/tokens.
    np.testing.assert_allclose(np.asarray(g).sum(-1), 0.0, atol=1e-6)
    lb = logits.astype(jnp.bfloat16)
    loss_b, _ = jctc(lb, fv, labels, lv, reduction="sum")
    assert loss_b.dtype == jnp.float32
    lb64 = np.asarray(lb, np.float64)
    ref_b = sum(ref_ctc_nll(lb64[b][fv[b]], seqs[b], 0) for b in range(B))
    assert_close(loss_b, ref_b, 1e-4)
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(logits, fv, labels, lv, reduction="avg")
