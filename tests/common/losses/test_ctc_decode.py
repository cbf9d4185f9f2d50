"""The on-device greedy CTC errors agree with the plain-Python decoding and Levenshtein
distance (the host versions beside them, used by host-side evaluations)."""

import jax
import jax.numpy as jnp
import numpy as np

from common.losses.ctc_decode import ctc_greedy, edit_distance, greedy_ctc_errors, phoneme_metrics


def test_matches_host_decoding_and_levenshtein():
    rng = np.random.default_rng(0)
    b, t, v, n = 16, 24, 5, 10
    logits = rng.normal(size=(b, t, v)).astype(np.float32)
    logits[..., 0] += rng.uniform(-1, 2, size=(b, 1))  # varied blank rates
    # left-padded frames, labels valid anywhere (order kept)
    lengths = rng.integers(0, t + 1, size=b)
    frame_valid = np.arange(t)[None, :] >= (t - lengths)[:, None]
    labels = rng.integers(1, v, size=(b, n)).astype(np.int32)
    label_valid = rng.uniform(size=(b, n)) < 0.7
    edits, ref_len = jax.jit(greedy_ctc_errors)(logits, frame_valid, labels, label_valid)
    for i in range(b):
        hyp = ctc_greedy(np.argmax(logits[i], -1)[frame_valid[i]].tolist())
        ref = labels[i][label_valid[i]].tolist()
        assert int(ref_len[i]) == len(ref)
        assert int(edits[i]) == edit_distance(hyp, ref), i


def test_repeat_across_blank_and_padding():
    # path a a _ a b over 5 frames after 2 padded frames (whose argmax is 'a')
    ids = np.array([[1, 1, 1, 1, 0, 1, 2]])
    logits = np.eye(3, dtype=np.float32)[ids] * 5
    valid = np.array([[False, False, True, True, True, True, True]])
    labels = np.array([[1, 1, 2, 0]])
    edits, ref_len = greedy_ctc_errors(logits, valid, labels, labels > 0)
    assert int(edits[0]) == 0 and int(ref_len[0]) == 3


def _onehot(ids, v=4):
    return jnp.asarray(np.eye(v, dtype=np.float32)[np.asarray(ids)] * 5)


def test_phoneme_metrics_per_and_nonblank_leave_cropped_rows_out():
    # row 0 decodes "1 2" against "1 3" (one substitution); row 1 is a crop without a
    # transcript, whose emitted symbols must not count as insertions.
    logits = _onehot([[1, 0, 2, 2], [3, 3, 0, 1]])
    frame_valid = jnp.ones((2, 4), bool)
    phonemes = jnp.asarray([[1, 3], [0, 0]])
    phonemes_valid = jnp.asarray([[True, True], [False, False]])
    m = phoneme_metrics(logits, frame_valid, phonemes, phonemes_valid)
    np.testing.assert_allclose(float(m["per"]), 0.5)
    np.testing.assert_allclose(float(m["nonblank"]), 6 / 8)
    assert (float(m["per_num"]), float(m["per_den"])) == (1.0, 2.0)
    # a batch of crops only has no rate (NaN), and adds nothing to the eval's sums
    m = phoneme_metrics(logits, frame_valid, phonemes, jnp.zeros((2, 2), bool))
    assert np.isnan(float(m["per"])) and float(m["per_num"]) == float(m["per_den"]) == 0


def test_ctc_greedy_and_edit_distance():
    assert ctc_greedy([0, 3, 3, 0, 3, 5, 5, 0, 0]) == [3, 3, 5]
    assert ctc_greedy([0, 0]) == []
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [2, 3]) == 1
    assert edit_distance([], [4, 5]) == 2
    assert edit_distance([1, 9, 3, 4], [1, 2, 3]) == 2  # kitten/sitting-style mix
