"""espeak-ng through ctypes: speech synthesis and IPA phonemes, with nothing downloaded.

The ``espeakng-loader`` package ships the espeak-ng shared library and its data. The
library is process-global and not re-entrant, so one ``Espeak`` engine per process
serialises every call with a lock. Synthesis is synchronous at espeak's native
22 050 Hz; resampling to a model's rate happens in the corpus builder.

A speaker is a ``Voice``: a language voice (``en-us``, ``de``, ...), a variant
(``m3``, ``f2``, ``klatt``, ... from ``voices/!v``), and prosody settings.

Determinism: espeak-ng seeds its noise generator from the clock unless told otherwise,
and keeps synthesis state (pitch flutter, echo) in static variables that survive even
``espeak_Terminate``. The engine therefore seeds the generator when it starts
(``espeak_ng_SetRandSeed``), which makes its output a deterministic function of the
seed and the sequence of calls since the process loaded the library: the same text
synthesised twice in one process differs slightly, while a fresh process making the
same calls reproduces them bit for bit. Corpus builders synthesise each shard's
utterances in a fixed order in a fresh worker process.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import threading
from functools import cache

import espeakng_loader
import numpy as np

SAMPLE_RATE = 22_050

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


class EspeakError(RuntimeError):
    """espeak-ng refused a voice or failed to synthesise."""


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
      language: an espeak language voice, e.g. "en-us", "en-gb-x-rp", "de", "fr-fr".
      variant: a voice variant from ``voices/!v`` ("m1".."m7", "f1".."f5", "klatt", ...)
        or "" for the language's default.
      rate: words per minute (80..450; espeak's default 175).
      pitch: base pitch 0..100 (default 50); range: pitch range 0..100 (default 50).
    """

    language: str = "en-us"
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    range: int = 50

    def __post_init__(self):
        if not 80 <= self.rate <= 450:
            raise ValueError(f"Voice.rate must be in [80, 450] words/min, got {self.rate}")
        for name in ("pitch", "range"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"Voice.{name} must be in [0, 100], got {getattr(self, name)}")

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def id(self) -> str:
        """A stable speaker id: every setting that changes the sound is in it."""
        return f"{self.espeak_name}:r{self.rate}:p{self.pitch}:g{self.range}"


def data_path() -> str:
    return espeakng_loader.get_data_path()


@cache
def languages() -> tuple[str, ...]:
    """Language voice names the shipped data provides (``lang/<family>/<name>``), lower
    case as ``espeak_SetVoiceByName`` and ``espeak-ng --voices`` spell them (``en-us``)."""
    names = []
    for _, _, files in os.walk(os.path.join(data_path(), "lang")):
        names.extend(f.lower() for f in files)
    return tuple(sorted(names))


@cache
def variants() -> tuple[str, ...]:
    """Voice variants the shipped data provides (``voices/!v``)."""
    return tuple(sorted(os.listdir(os.path.join(data_path(), "voices", "!v"))))


class Espeak:
    """The process's espeak-ng engine (use ``Espeak.get()``)."""

    _instance: Espeak | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> Espeak:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                           data_path().encode(), 0)
        if rate != SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate}, expected {SAMPLE_RATE} Hz "
                              f"(data path {data_path()})")
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes callbacks must outlive every call that uses them.
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._voice: Voice | None = None
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed espeak's noise generator (see the module doc on determinism)."""
        with self._lock:
            self._lib.espeak_ng_SetRandSeed(int(seed))

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # continue

    def _set_voice(self, voice: Voice) -> None:
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice.espeak_name!r} (languages: "
                              f"espeak.languages(), variants: espeak.variants())")
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch),
                             (_RANGE, voice.range), (_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, value, 0)
        self._voice = voice

    def synthesize(self, text: str, voice: Voice = Voice()) -> np.ndarray:
        """Speak ``text``: float32 ``[N]`` in [-1, 1] at 22 050 Hz."""
        data = text.encode()
        with self._lock:
            self._set_voice(voice)
            self._chunks = []
            status = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if status != 0:
            raise EspeakError(f"espeak_Synth failed ({status}) for {voice.id}: {text[:60]!r}")
        if not chunks:
            return np.zeros((0,), np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)

    def phonemize(self, text: str, voice: Voice = Voice()) -> str:
        """IPA phonemes of ``text`` in ``voice``'s language; clauses joined by spaces."""
        with self._lock:
            self._set_voice(voice)
            buf = ctypes.c_char_p(text.encode())
            ptr = ctypes.pointer(buf)
            clauses = []
            # espeak returns one clause per call and advances the pointer past it.
            while ptr.contents.value:
                out = self._lib.espeak_TextToPhonemes(
                    ctypes.cast(ptr, ctypes.POINTER(ctypes.c_void_p)), _CHARS_UTF8,
                    _PHONEMES_IPA)
                if out:
                    clauses.append(_LANG_SWITCH.sub("", out.decode("utf-8")).strip())
        return " ".join(c for c in clauses if c)


# espeak marks a switch to another language's rules inside a clause (a loanword read as
# English) with "(en)" ... "(fr)"; the letters would pass for IPA in the phoneme
# vocabulary, so they are removed.
_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")


def synthesize(text: str, voice: Voice = Voice()) -> np.ndarray:
    """``Espeak.get().synthesize``: float32 ``[N]`` at ``SAMPLE_RATE``."""
    return Espeak.get().synthesize(text, voice)


def phonemize(text: str, voice: Voice = Voice()) -> str:
    """``Espeak.get().phonemize``: an IPA string."""
    return Espeak.get().phonemize(text, voice)
