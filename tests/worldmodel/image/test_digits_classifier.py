"""The digits classifier that scores generated digits: it classifies held-out digits,
is the same network on every training, and its scorer's numbers mean what they say."""

import numpy as np
import pytest

from worldmodel.image.diffusion.config import DIGITS
from worldmodel.image.diffusion.data import split_arrays
from worldmodel.image.digits_classifier import DigitsScorer, classify, to_grid, train_classifier


@pytest.fixture(scope="module")
def digits():
    import dataclasses

    data = dataclasses.replace(DIGITS, train=dataclasses.replace(DIGITS.train, size=16))
    return split_arrays(data, "train"), split_arrays(data, "held-out")


def test_classifies_held_out_digits_and_is_deterministic(digits):
    (x, y), (hx, hy) = digits
    assert x.shape == (1500, 16, 16, 3) and hx.shape == (297, 16, 16, 3)
    model = train_classifier(x, y)
    feats, pred = classify(model, hx)
    assert feats.shape == (297, 64)
    # the held-out digits are other writers' (the set is ordered by writer)
    assert np.mean(pred == hy) >= 0.9
    again, _ = classify(train_classifier(x, y), hx)
    np.testing.assert_array_equal(feats, again)


def test_scorer_on_real_and_scrambled_digits(digits):
    (x, y), (hx, hy) = digits
    scorer = DigitsScorer(x, y)
    assert scorer.train_accuracy >= 0.97
    real = scorer.score(hx, hy)
    wrong = scorer.score(hx, (hy + 1) % 10)  # the right images, the wrong classes
    noise = scorer.score(np.random.default_rng(0).uniform(-1, 1, hx.shape), hy)
    assert real["class_accuracy"] >= 0.9 and wrong["class_accuracy"] <= 0.1
    assert wrong["frechet"] == real["frechet"]  # the distance ignores the labels
    assert noise["frechet"] > 10 * real["frechet"]


def test_grid_is_block_means_of_grey():
    img = np.zeros((1, 16, 16, 3), np.float32)
    img[0, :2, :2] = [1.0, 0.5, 0.0]  # the top-left block: grey 0.5
    g = np.asarray(to_grid(img))
    assert g.shape == (1, 64) and g[0, 0] == pytest.approx(0.5) and np.all(g[0, 1:] == 0)
    with pytest.raises(ValueError, match="multiples of 8"):
        to_grid(np.zeros((1, 12, 12, 3)))
