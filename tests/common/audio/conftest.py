"""Shared test signals for the audio DSP tests."""

from collections.abc import Callable

import numpy as np
import pytest
import scipy.signal

# (centre frequency Hz, bandwidth Hz) of a few vowel-like formants.
_FORMANTS = ((730.0, 90.0), (1090.0, 110.0), (2440.0, 170.0), (3400.0, 250.0))


def speech_like(n: int, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A synthetic voiced-speech-like float64 ``[n]`` signal, peak 0.5.

    Glottal pulse train with f0 gliding 100-200 Hz, smoothed (glottal roll-off), passed
    through cascaded two-pole formant resonators, with a syllabic amplitude envelope
    and a little aspiration noise: sharp harmonics, spectral tilt, near-silent gaps.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 150.0 + 50.0 * np.sin(2 * np.pi * (1.3 + 0.2 * seed) * t + seed)
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    y = scipy.signal.lfilter([1.0], [1.0, -1.8, 0.81], pulses)  # glottal low-pass
    for freq, bw in _FORMANTS:
        r = np.exp(-np.pi * bw / sr)
        y = scipy.signal.lfilter([1.0 - r], [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], y)
    envelope = np.sin(np.pi * np.clip(t * 4.0 % 1.0, 0.0, 1.0)) ** 2  # ~4 syllables / s
    y = y * envelope + 0.003 * rng.standard_normal(n) * envelope
    return 0.5 * y / np.abs(y).max()


@pytest.fixture
def make_speech() -> Callable[..., np.ndarray]:
    """The ``speech_like(n, sr=16000, seed=0)`` generator."""
    return speech_like
