"""What the codecs' train commands log and print besides the loop's scalars: audio and
log-mel spectrograms of reconstructions (of a fixed first batch) and the closing
one-line summary of a run's metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np

from common.audio import log_mel_spectrogram

log = logging.getLogger(__name__)


def first_batch(make_iter: Callable[[], Iterator[dict]]) -> dict[str, Any]:
    """One batch from a fresh iterator (for logging examples)."""
    it = make_iter()
    try:
        return next(iter(it))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def log_reconstructions(step: int, logger, real: np.ndarray, recon: np.ndarray,
                        valid: np.ndarray, sample_rate: int) -> None:
    """Log ``audio/<i>_real|recon`` and their log-mel spectrograms ``mel/<i>_...`` for
    each row of ``real, recon [B, N, 1]``, padding (``valid [B, N]`` False) cut off.
    A reconstruction with almost no variation (a flat or DC output, what an untrained or
    collapsed decoder gives) is reported by a warning, not only heard."""
    for i in range(real.shape[0]):
        keep = np.asarray(valid[i], bool)
        if not keep.any():
            continue
        ref_std, rec_std = float(np.std(real[i, keep, 0])), float(np.std(recon[i, keep, 0]))
        if rec_std < 0.01 * ref_std:
            log.warning("step %d: reconstruction %d is flat (std %.2g, mean %.2g; the input's "
                        "std is %.2g): the decoder outputs no signal yet", step, i, rec_std,
                        float(np.mean(recon[i, keep, 0])), ref_std)
        for name, x in (("real", real[i, keep, 0]), ("recon", recon[i, keep, 0])):
            logger.log_audio(step, f"audio/{i}_{name}", x, sample_rate)
            mel = log_mel_spectrogram(jnp.asarray(x), sr=sample_rate,
                                      n_fft=1024, hop_length=256, n_mels=80)
            logger.log_spectrogram(step, f"mel/{i}_{name}", np.asarray(mel))
