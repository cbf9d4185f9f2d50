"""The Frechet distance between two Gaussians fitted to feature sets (FID's statistic).

``d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)`` (Dowson & Landau
1982; Heusel et al. 2017 use it on Inception features as FID). What the features are is
the caller's: the generated digits are scored on a small classifier trained here
(``worldmodel.image.digits_classifier``), audio on mel statistics, so the numbers are
comparable within this codebase, not with published FIDs.

The trace of the matrix square root is computed from the eigenvalues of the symmetric
``S_1^1/2 S_2 S_1^1/2`` (``eigh``, clipped at 0), which has the same eigenvalues as
``S_1 S_2``: no ``scipy.linalg.sqrtm`` of a non-symmetric product and none of the
imaginary parts pytorch-fid has to drop. Host-side numpy in float64: the statistic is
computed once per evaluation on a few hundred to a few thousand feature rows.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """``features [N, D]`` -> ``(mean [D], covariance [D, D])`` float64 (unbiased, N - 1)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"gaussian_stats needs features [N >= 2, D], got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("gaussian_stats: features hold NaN or infinite values")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The squared Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``
    (``mu [D]``, ``sigma [D, D]`` symmetric positive semi-definite), >= 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: means [D] and covariances [D, D] of one D, got "
                         f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)
    return max(value, 0.0)


def feature_frechet(a, b) -> float:
    """The Frechet distance between Gaussians fitted to ``a [N, D]`` and ``b [M, D]``."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
