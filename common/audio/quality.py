"""Host-side quality measures of re-synthesised speech, one utterance at a time (numpy,
not jitted): what the codecs' and the vocoder's evaluations (and the TTS's) report.

``si_sdr`` (scale-invariant SDR, Le Roux et al. 2019), ``pesq_wb`` (ITU-T P.862.2
wide-band PESQ via the ``pesq`` package, on 16 kHz resampled copies), ``stoi`` (Taal et
al. 2011 via ``pystoi``). PESQ and STOI come from the optional ``eval`` dependency
group: ``perceptual_available()`` says whether they are installed, and the functions
return None when they are not.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from common.audio.io import resample

PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz


def perceptual_available() -> dict[str, bool]:
    return {name: importlib.util.find_spec(name) is not None for name in ("pesq", "pystoi")}


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """SI-SDR in dB of mono ``estimate [N]`` against ``reference [N]`` (both mean-removed;
    the reference is scaled by the optimal projection)."""
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """Wide-band PESQ (MOS-LQO, 1.04 to 4.64); None without the package or for an input
    PESQ cannot score (no speech detected)."""
    try:
        from pesq import PesqError, pesq
    except ImportError:
        return None
    ref = resample(reference, sample_rate, PESQ_RATE)
    est = resample(estimate, sample_rate, PESQ_RATE)
    try:
        return float(pesq(PESQ_RATE, ref, est, "wb"))
    except PesqError:
        return None


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
         extended: bool = False) -> float | None:
    """STOI (0 to 1; ``extended``: ESTOI); None without ``pystoi``."""
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        return None
    return float(_stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64),
                       sample_rate, extended=extended))
