"""The speech models' input features: log-mel frames of 16 kHz speech, computed on the
device from a pipeline batch (left-padded waveforms), with their valid-frame mask.

The defaults are SpeechBrain's ECAPA-TDNN recipe (``Fbank``: 25 ms Hann window, 10 ms
hop, 80 mel bands, natural log); the speaker encoder and the content encoders share it
so that one front end serves both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.audio.mel import log_mel_spectrogram
from common.audio.stft import frame_mask
from common.speech.config import MelFeatures


def log_mel_frames(feats: MelFeatures, audio: jax.Array, lengths: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
    """``audio [B, N]`` or ``[B, N, 1]`` left-padded, ``lengths [B]`` valid samples ->
    ``(mel [B, T, n_mels] float32, valid [B, T] bool)``, ``T = 1 + N // hop``;
    frames outside ``valid`` are zero."""
    x = audio[..., 0] if audio.ndim == 3 else audio
    n = x.shape[-1]
    mel = log_mel_spectrogram(
        x.astype(jnp.float32), feats.sample_rate, feats.n_fft, feats.hop_length,
        feats.win_length, n_mels=feats.n_mels, fmin=feats.fmin, fmax=feats.fmax,
        log_floor=feats.log_floor, lengths=lengths, padding_side="left")
    valid = frame_mask(lengths, n, n_fft=feats.n_fft, hop_length=feats.hop_length,
                       padding_side="left")
    return jnp.where(valid[..., None], mel, 0.0), valid
