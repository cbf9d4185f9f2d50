"""Audio DSP in pure JAX (STFT/iSTFT, mel, multi-resolution STFT) and host-side I/O.

DSP functions take waveforms ``[..., N]`` (time last) and return channels-last
features ``[..., frames, freq]``, with librosa's semantics.
"""

from common.audio.io import AudioLoadError, load_audio, resample, save_audio
from common.audio.mel import (
    hz_to_mel,
    log_mel_spectrogram,
    mel_filterbank,
    mel_spectrogram,
    mel_to_hz,
)
from common.audio.multires import (
    DEFAULT_RESOLUTIONS,
    STFTConfig,
    geometric_resolutions,
    multi_resolution_magnitudes,
)
from common.audio.stft import (
    frame_lengths,
    frame_mask,
    get_window,
    istft,
    log_magnitude,
    magnitude,
    num_frames,
    stft,
    window_sumsquare,
)

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "AudioLoadError",
    "STFTConfig",
    "frame_lengths",
    "frame_mask",
    "geometric_resolutions",
    "get_window",
    "hz_to_mel",
    "istft",
    "load_audio",
    "log_magnitude",
    "log_mel_spectrogram",
    "magnitude",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_hz",
    "multi_resolution_magnitudes",
    "num_frames",
    "resample",
    "save_audio",
    "stft",
    "window_sumsquare",
]
