import jax.numpy as jnp
import numpy as np
import pytest

from common.nn.masks import make_attention_mask, positions_from_valid, valid_from_lengths


def test_valid_and_positions_for_left_padding():
    valid = valid_from_lengths(jnp.array([3, 5]), 5)
    np.testing.assert_array_equal(valid, [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(positions_from_valid(valid), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])
    right = valid_from_lengths(jnp.array([2]), 4, left_padded=False)
    np.testing.assert_array_equal(right, [[1, 1, 0, 0]])


def test_causal_and_window():
    pos = jnp.arange(5)[None]
    causal = make_attention_mask(q_positions=pos, kv_positions=pos, causal=True)
    assert causal.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(causal[0, 0], np.tril(np.ones((5, 5), bool)))
    win = make_attention_mask(q_positions=pos, kv_positions=pos, causal=True, window=2)
    np.testing.assert_array_equal(win[0, 0], np.tril(np.ones((5, 5), bool)) &
                                  np.triu(np.ones((5, 5), bool), -1))
    bi = make_attention_mask(q_positions=pos, kv_positions=pos, window=2)
    i, j = np.indices((5, 5))
    np.testing.assert_array_equal(bi[0, 0], np.abs(i - j) < 2)
    asym = make_attention_mask(q_positions=pos, kv_positions=pos, window=(0, 1))
    np.testing.assert_array_equal(asym[0, 0], (j - i >= 0) & (j - i <= 1))


def test_padding_cross_and_segments_combine():
    q_valid = jnp.array([[True, True, False]])
    kv_valid = jnp.array([[False, True, True, True]])
    m = make_attention_mask(q_valid=q_valid, kv_valid=kv_valid)
    assert m.shape == (1, 1, 3, 4)
    np.testing.assert_array_equal(m[0, 0], np.outer([1, 1, 0], [0, 1, 1, 1]).astype(bool))
    seg_q, seg_k = jnp.array([[1, 1, 2]]), jnp.array([[1, 2, 2, 2]])
    m2 = make_attention_mask(q_valid=q_valid, kv_valid=kv_valid, q_segments=seg_q,
                             kv_segments=seg_k)
    np.testing.assert_array_equal(m2[0, 0], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_decode_positions_beyond_cache():
    # One query at position 6 against 8 cache slots holding positions 0..7.
    m = make_attention_mask(q_positions=jnp.array([[6]]), kv_positions=jnp.arange(8)[None],
                            causal=True)
    np.testing.assert_array_equal(m[0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0])


def test_none_and_errors():
    assert make_attention_mask() is None
    with pytest.raises(ValueError, match="positions"):
        make_attention_mask(causal=True)
    with pytest.raises(ValueError, match="go together"):
        make_attention_mask(q_valid=jnp.ones((1, 2), bool))
