"""EER against SpeechBrain's table computation, and the trials."""

import numpy as np
import pytest

from common.speech.verification import cosine_trials, equal_error_rate


def speechbrain_eer(pos, neg):
    """speechbrain.utils.metric_stats.EER, transcribed to numpy (a trials x thresholds
    table)."""
    t = np.unique(np.concatenate([pos, neg]))
    t = np.sort(np.concatenate([t, (t[:-1] + t[1:]) / 2]))
    frr = (pos[:, None] <= t).sum(0) / len(pos)
    far = (neg[:, None] > t).sum(0) / len(neg)
    k = np.argmin(np.abs(far - frr))
    return (far[k] + frr[k]) / 2, t[k]


@pytest.mark.parametrize("seed", range(4))
def test_matches_speechbrain(seed):
    rng = np.random.default_rng(seed)
    pos = rng.normal(1.0, 1.0, 50 + seed)
    neg = rng.normal(0.0, 1.0, 300)
    if seed == 3:  # ties between the two kinds
        pos, neg = np.round(pos, 1), np.round(neg, 1)
    scores = np.concatenate([pos, neg])
    target = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    got = equal_error_rate(scores, target)
    want = speechbrain_eer(pos, neg)
    assert got[0] == pytest.approx(want[0], abs=1e-12) and got[1] == want[1]


def test_separable_is_zero_and_errors_name_the_need():
    assert equal_error_rate(np.array([0.9, 0.8, 0.1, 0.2]),
                            np.array([True, True, False, False]))[0] == 0.0
    with pytest.raises(ValueError, match="target and non-target"):
        equal_error_rate(np.array([0.5]), np.array([True]))


def test_cosine_trials():
    e = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    scores, target = cosine_trials(e, np.array(["a", "a", "b"]))
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(target, [True, False, False])
