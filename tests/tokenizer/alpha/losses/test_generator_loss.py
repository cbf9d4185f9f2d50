"""The stage-1 CTC term: utterances without phonemes (cropped, masked) are left out."""

import jax
import numpy as np

from tests.common.losses.test_ctc import ref_ctc_nll
from tests.helpers import assert_close
from tokenizer.alpha.losses.generator_loss import phoneme_ctc_loss


def test_phoneme_ctc_loss_leaves_out_rows_without_phonemes():
    rng = np.random.default_rng(0)
    b, t, k, n = 4, 12, 6, 5
    logits = rng.normal(size=(b, t, k)).astype(np.float32)
    frames = np.ones((b, t), bool)
    phonemes = rng.integers(1, k, (b, n)).astype(np.int32)
    valid = np.ones((b, n), bool)
    valid[1] = False  # a cropped utterance: the pipeline empties its phoneme row
    valid[3, :2] = False  # left padding of a shorter transcript
    loss_fn = jax.jit(phoneme_ctc_loss)
    loss, m = loss_fn(logits, frames, phonemes, valid)
    # Mean NLL per token over rows 0, 2, 3; row 1 is not trained towards all blanks.
    nll = [ref_ctc_nll(logits[r], phonemes[r][valid[r]].tolist(), 0) for r in (0, 2, 3)]
    assert_close(loss, sum(nll) / valid.sum(), 1e-4)
    assert float(m["ctc_examples"]) == 3 and set(m) >= {"ctc", "ctc_infeasible",
                                                         "ctc_blank_prob"}
    # A batch of cropped utterances only: no CTC signal, a finite 0.
    loss0, m0 = loss_fn(logits, frames, phonemes, np.zeros((b, n), bool))
    assert float(loss0) == 0.0 and float(m0["ctc_examples"]) == 0.0
