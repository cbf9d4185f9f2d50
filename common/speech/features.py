"""The speech models' input features: log-mel frames of 16 kHz speech, computed on the
device from a pipeline batch (left-padded waveforms), with their valid-frame mask.

The defaults are SpeechBrain's ECAPA-TDNN recipe (``Fbank``: 25 ms Hann window, 10 ms
hop, 80 mel bands, natural log); the speaker encoder and the content encoders share it
so that one front end serves both.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from common.audio.mel import log_mel_spectrogram
from common.audio.stft import frame_mask


@dataclasses.dataclass(frozen=True)
class MelFeatures:
    """Log-mel front end (librosa's mel definition, ``common.audio.mel``)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    """25 ms at 16 kHz."""
    hop_length: int = 160
    """10 ms at 16 kHz."""
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    log_floor: float = 1e-6

    def __post_init__(self):
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"MelFeatures.win_length must be in (0, n_fft={self.n_fft}], "
                             f"got {self.win_length}")

    def __call__(self, audio: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``audio [B, N]`` or ``[B, N, 1]`` left-padded, ``lengths [B]`` valid samples ->
        ``(mel [B, T, n_mels] float32, valid [B, T] bool)``, ``T = 1 + N // hop``;
        frames outside ``valid`` are zero."""
        x = audio[..., 0] if audio.ndim == 3 else audio
        n = x.shape[-1]
        mel = log_mel_spectrogram(
            x.astype(jnp.float32), self.sample_rate, self.n_fft, self.hop_length,
            self.win_length, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax,
            log_floor=self.log_floor, lengths=lengths, padding_side="left")
        valid = frame_mask(lengths, n, n_fft=self.n_fft, hop_length=self.hop_length,
                           padding_side="left")
        return jnp.where(valid[..., None], mel, 0.0), valid
