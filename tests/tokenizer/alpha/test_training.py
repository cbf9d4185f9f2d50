"""The alpha training module's own metrics (the GAN step itself is exercised by
test_train.py's runs)."""

import jax.numpy as jnp
import numpy as np

from tokenizer.alpha.training import phoneme_metrics


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
