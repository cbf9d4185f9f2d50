"""Valid masks of left-padded batches at every frame rate."""

import jax.numpy as jnp
import numpy as np

from tokenizer.codec.masks import (
    downsample_valid,
    frame_valids,
    lengths_to_valid,
    upsample_valid,
    valid_lengths,
)


def test_left_padding():
    valid = lengths_to_valid(jnp.array([0, 1, 5, 7, 12]), 12)
    np.testing.assert_array_equal(valid_lengths(valid), [0, 1, 5, 7, 12])
    assert not valid[2, :7].any() and valid[2, 7:].all()
    # a frame is valid when any of its samples is: the last ceil(len / hop) frames
    down = downsample_valid(valid, 3)
    np.testing.assert_array_equal(valid_lengths(down), [0, 1, 2, 3, 4])
    assert not down[3, :1].any() and down[3, 1:].all()
    np.testing.assert_array_equal(upsample_valid(down, 3)[:, -1], down[:, -1])
    assert upsample_valid(down, 3).shape == (5, 12)
    rates = frame_valids(valid, (2, 3))
    assert [r.shape[1] for r in rates] == [12, 6, 2]
    np.testing.assert_array_equal(valid_lengths(rates[-1]), [0, 1, 1, 2, 2])
