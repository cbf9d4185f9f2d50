"""The Frechet distance against its closed form for diagonal covariances and against
the computation of pytorch-fid (``scipy.linalg.sqrtm`` of the covariance product)."""

import numpy as np
import pytest
import scipy.linalg

from worldmodel.diffusion.frechet import feature_frechet, frechet_distance, gaussian_stats


def _pytorch_fid(mu1, s1, mu2, s2):
    # pytorch-fid's calculate_frechet_distance, without its singular-product fallback
    covmean = scipy.linalg.sqrtm(s1.dot(s2)).real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("d", [3, 16, 64])
def test_matches_pytorch_fid(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        _pytorch_fid(mu1, s1, mu2, s2), rel=1e-9)


def test_rank_deficient_covariances():
    # fewer samples than dimensions (as with a few hundred samples of wide features):
    # still finite, non-negative and symmetric
    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 32, rank=5), _random_cov(rng, 32, rank=7)
    mu = np.zeros(32)
    a, b = frechet_distance(mu, s1, mu, s2), frechet_distance(mu, s2, mu, s1)
    # sqrt of the rounding-level eigenvalues of a singular product: ~1e-8 each
    assert np.isfinite(a) and a > 0 and a == pytest.approx(b, abs=1e-6)


def test_same_distribution_is_zero_and_shift_adds_squared_norm():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert feature_frechet(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = np.arange(8.0)
    assert feature_frechet(x + shift, x) == pytest.approx(np.sum(shift**2), rel=1e-9)


def test_gaussian_stats_and_errors():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, cov = gaussian_stats(x)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(cov, np.cov(x.T))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(mu, cov, np.zeros(3), np.eye(3))
