"""Speaker verification scoring: trials from labelled embeddings and the equal error rate.

``equal_error_rate`` is SpeechBrain's ``EER`` (thresholds at every score and midway
between neighbours; false rejection = targets scoring <= t, false acceptance =
non-targets scoring > t; the EER is the mean of the two where they are closest),
computed by sorting instead of a trials x thresholds table, so it scales to millions
of trials.
"""

from __future__ import annotations

import numpy as np


def cosine_trials(embeddings: np.ndarray, labels: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of distinct utterances as a trial.

    ``embeddings [U, D]``, ``labels [U]`` -> ``(scores [P], target [P])`` with
    ``P = U (U - 1) / 2``: cosine similarities and whether the pair shares a speaker.
    """
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(e), k=1)
    labels = np.asarray(labels)
    return np.sum(e[i] * e[j], axis=1), labels[i] == labels[j]


def equal_error_rate(scores: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)`` of trial ``scores`` (higher: same speaker) with ``target``
    marking same-speaker trials. Needs at least one trial of each kind."""
    scores = np.asarray(scores, np.float64)
    target = np.asarray(target, bool)
    pos, neg = np.sort(scores[target]), np.sort(scores[~target])
    if not len(pos) or not len(neg):
        raise ValueError(f"equal_error_rate needs target and non-target trials, got "
                         f"{len(pos)} and {len(neg)}")
    t = np.unique(scores)
    t = np.sort(np.concatenate([t, (t[:-1] + t[1:]) / 2]))
    frr = np.searchsorted(pos, t, side="right") / len(pos)
    far = 1.0 - np.searchsorted(neg, t, side="right") / len(neg)
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(t[k])
