"""The linear speaker probe: scikit-learn's logistic regression objective, two-fold
scoring within each label, and its refusals."""

import numpy as np
import pytest

from worldmodel.audio.probe import fit_linear_probe, probe_accuracy


def test_fit_matches_scikit_learn_logistic_regression():
    sklearn = pytest.importorskip("sklearn.linear_model",
                                  reason="scikit-learn (librosa's dependency) is absent")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12))
    y = rng.integers(0, 5, 60)
    x[:, :3] += 0.5 * y[:, None]
    for l2 in (1.0, 0.1):
        mean, std, w, b = fit_linear_probe(x, y, l2=l2)
        np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
        ref = sklearn.LogisticRegression(C=1.0 / l2, max_iter=10_000, tol=1e-12).fit(
            (x - mean) / std, y)
        # Softmax is unchanged by a constant added to every class's bias or weight
        # column; the L2 penalty fixes the weights' offset, the unpenalised bias's is
        # left free, so compare biases centred.
        np.testing.assert_allclose(w, ref.coef_.T, atol=1e-5)
        np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(),
                                   atol=1e-5)


def test_two_fold_accuracy_separable_random_and_singletons():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 4)
    centres = rng.normal(size=(6, 8)) * 5
    x = centres[labels] + rng.normal(size=(24, 8)) * 0.1
    names = [f"spk{i}" for i in labels]
    r = probe_accuracy(x, names)
    assert (r.accuracy, r.examples, r.classes) == (1.0, 24, 6)
    assert r.chance == pytest.approx(1 / 6)  # balanced: the majority label is one in six
    noise = rng.normal(size=(24, 8))
    assert probe_accuracy(noise, names).accuracy < 0.5
    # A label with one example cannot be both fitted and scored: left out.
    r = probe_accuracy(np.concatenate([x, x[:1]]), [*names, "alone"])
    assert (r.examples, r.classes) == (24, 6)


def test_refuses_too_few_examples():
    with pytest.raises(ValueError, match="two labels with two examples"):
        probe_accuracy(np.zeros((3, 2)), ["a", "a", "b"])


def test_groups_stay_in_one_fold():
    """Frames of one utterance are fitted or scored together: a probe that could only
    memorise utterances (each its own random direction) scores at chance."""
    rng = np.random.default_rng(2)
    utt = np.repeat(np.arange(16), 20)  # 16 utterances of 20 frames
    speaker = utt % 4
    x = rng.normal(size=(16, 8))[utt] + 0.01 * rng.normal(size=(320, 8))
    names = [f"s{i}" for i in speaker]
    # Scored frame by frame, the utterance's frames leak into both folds: near 1.
    assert probe_accuracy(x, names).accuracy > 0.9
    grouped = probe_accuracy(x, names, groups=utt)
    assert grouped.accuracy < 0.6 and grouped.examples == 320
