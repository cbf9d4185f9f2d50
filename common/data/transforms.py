"""Per-utterance transforms on the host: crop, loudness normalisation, tokenisation.

All take and return numpy arrays (waveforms float32 ``[N]``, token ids int32 ``[L]``)
and run inside grain workers, never under ``jax.jit``. Randomness comes from
``example_rng(seed, epoch, index)``: a generator that depends only on those numbers, so
a resumed run, or one with a different worker count, crops and augments each utterance
exactly as the original run did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from common.data.records import DataError
from common.data.vocab import EOS, Vocab

# Separate streams for separate decisions, so adding one never shifts another.
SALT_CROP, SALT_GAIN = 1, 2


def example_rng(seed: int, epoch: int, index: int, salt: int) -> np.random.Generator:
    """A generator determined by ``(seed, epoch, index, salt)`` alone (all >= 0)."""
    return np.random.default_rng([seed, epoch, index, salt])


def random_crop(wav: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """A window of ``length`` samples of ``wav`` ``[N]`` (all of it if ``N <= length``).

    ``rng`` picks the start uniformly; ``None`` takes the start of the utterance.
    """
    n = wav.shape[0]
    if n <= length:
        return wav
    start = 0 if rng is None else int(rng.integers(0, n - length + 1))
    return wav[start:start + length]


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level of ``wav`` in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else -np.inf


def normalize_loudness(wav: np.ndarray, target_dbfs: float, peak_dbfs: float = -1.0,
                       gain_db: float = 0.0) -> np.ndarray:
    """Scale ``wav`` ``[N]`` to an RMS of ``target_dbfs + gain_db``, peaks at most ``peak_dbfs``.

    The peak limit wins over the RMS target (a spiky utterance ends up quieter than the
    target rather than clipped). Digital silence is returned unchanged. float32 ``[N]``.
    """
    wav = np.asarray(wav, np.float32)
    level = rms_dbfs(wav)
    if not np.isfinite(level):
        return wav
    scale = 10.0 ** ((target_dbfs + gain_db - level) / 20.0)
    peak = float(np.max(np.abs(wav)))
    scale = min(scale, 10.0 ** (peak_dbfs / 20.0) / peak)
    return (wav * np.float32(scale)).astype(np.float32, copy=False)


def load_vocab(vocab: str | Path | Vocab | None) -> Vocab | None:
    """A ``Vocab`` from a ``Vocab`` or the path of a saved one (None stays None)."""
    if vocab is None or isinstance(vocab, Vocab):
        return vocab
    return Vocab.load(vocab)


def tokenize(text: str, vocab: Vocab, *, max_len: int | None = None,
             on_long: Literal["error", "truncate"] = "error", bos_eos: bool = False,
             where: str = "") -> np.ndarray:
    """int32 ``[L]`` ids of ``text`` (optionally framed by ``<bos>``/``<eos>``).

    Longer than ``max_len``: raise ``DataError`` naming ``where`` (the utterance id),
    or keep the first ``max_len`` ids (``<eos>`` kept last when asked for).
    """
    ids = vocab.encode(text, bos=bos_eos, eos=bos_eos)
    if max_len is None or ids.shape[0] <= max_len:
        return ids
    if on_long == "error":
        raise DataError(f"{where or 'utterance'}: {ids.shape[0]} tokens > max_tokens "
                        f"{max_len} (raise max_tokens or set long_tokens='truncate')")
    ids = ids[:max_len].copy()
    if bos_eos:
        ids[-1] = EOS
    return ids
