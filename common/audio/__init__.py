"""Audio DSP in pure JAX (STFT/iSTFT, mel, multi-resolution STFT) and host-side I/O.

DSP functions take waveforms ``[..., N]`` (time last) and return channels-last
features ``[..., frames, freq]``, with librosa's semantics.
"""

import importlib
import sys
import types

# Names load on first use (PEP 562): host-side I/O (``common.audio.io``: soundfile, soxr)
# must not pull in jax and scipy, which the DSP modules need, so that a command that only
# reads audio starts in a fraction of a second.
_EXPORTS = {
    "common.audio.io": ("AudioLoadError", "load_audio", "resample", "save_audio"),
    "common.audio.mel": ("hz_to_mel", "log_mel_spectrogram", "mel_filterbank",
                         "mel_spectrogram", "mel_to_hz"),
    "common.audio.multires": ("DEFAULT_RESOLUTIONS", "STFTConfig", "geometric_resolutions",
                              "multi_resolution_magnitudes"),
    "common.audio.stft": ("frame_lengths", "frame_mask", "get_window", "istft",
                          "log_magnitude", "magnitude", "num_frames", "stft",
                          "window_sumsquare"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'common.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


class _Package(types.ModuleType):
    """``common.audio.stft`` is the function (as with eager imports), even after the
    import system, loading the submodule of that name, binds the module here."""

    def __setattr__(self, name: str, value) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
