"""The host-side quality measures on known cases."""

import numpy as np
import pytest

from common.audio import quality as M


def test_si_sdr_known_cases(rng):
    x = rng.standard_normal(16000)
    assert M.si_sdr(x, 0.3 * x) > 70  # scale-invariant: a scaled copy is perfect
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    noise -= np.dot(noise, x - x.mean()) / np.dot(x - x.mean(), x - x.mean()) * (x - x.mean())
    noise *= np.linalg.norm(x - x.mean()) / np.linalg.norm(noise) / 10  # orthogonal, -20 dB
    assert M.si_sdr(x, x + noise) == pytest.approx(20.0, abs=1e-6)


def test_perceptual_metrics(rng):
    if not all(M.perceptual_available().values()):
        pytest.skip("pesq/pystoi not installed: uv sync --group eval")
    t = np.arange(24000 * 2) / 24000
    speechy = (np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
               + 0.3 * np.sin(2 * np.pi * 1200 * t)).astype(np.float32) * 0.3
    noisy = speechy + 0.1 * rng.standard_normal(speechy.size).astype(np.float32)
    clean_pesq, noisy_pesq = M.pesq_wb(speechy, speechy, 24000), M.pesq_wb(speechy, noisy, 24000)
    assert clean_pesq > 4.0 and noisy_pesq < clean_pesq
    assert M.stoi(speechy, speechy, 24000) == pytest.approx(1.0, abs=1e-3)
    assert M.stoi(speechy, noisy, 24000) < 0.99
    assert M.pesq_wb(np.zeros(24000), np.zeros(24000), 24000) is None  # no speech: no score
