import subprocess
import sys
import threading

import numpy as np
import pytest

from common.data import espeak
from common.data.espeak import SAMPLE_RATE, EspeakError, Voice, phonemize, synthesize


def test_synthesis_is_speech_like_and_deterministic():
    wav = synthesize("Hello world, this is a test.")
    assert wav.dtype == np.float32 and wav.ndim == 1
    seconds = len(wav) / SAMPLE_RATE
    assert 0.8 < seconds < 4.0, seconds
    assert np.all(np.isfinite(wav)) and np.abs(wav).max() <= 1.0
    assert np.sqrt(np.mean(wav**2)) > 0.01  # not silence


_SEQUENCE = """
import hashlib
from common.data.espeak import Voice, synthesize
h = hashlib.sha256()
for text, voice in [("Hello world, this is a test.", Voice()),
                    ("Guten Morgen, wie geht es?", Voice("de", "f2")),
                    ("Hello world, this is a test.", Voice(rate=140))]:
    h.update(synthesize(text, voice).tobytes())
print(h.hexdigest())
"""


def test_a_fresh_process_reproduces_the_same_calls_bit_for_bit():
    run = lambda: subprocess.run([sys.executable, "-c", _SEQUENCE], capture_output=True,
                                 text=True, check=True).stdout.strip()
    first, second = run(), run()
    assert len(first) == 64 and first == second


def test_voices_and_prosody_change_the_sound():
    text = "The quick brown fox jumps over the lazy dog."
    base = synthesize(text, Voice("en-us"))
    slow = synthesize(text, Voice("en-us", rate=120))
    assert len(slow) > 1.2 * len(base)  # slower speech is longer
    other = synthesize(text, Voice("en-us", variant="f2"))
    high = synthesize(text, Voice("en-us", pitch=90))
    for wav in (other, high):
        n = min(len(wav), len(base))
        assert not np.allclose(wav[:n], base[:n], atol=1e-2)
    # Settings are not sticky: back to the default voice, the default length returns.
    assert abs(len(synthesize(text, Voice("en-us"))) - len(base)) < 0.01 * len(base)


def test_phonemes_are_ipa_per_language():
    ipa = phonemize("Hello world. This is a test.")
    assert "həlˈoʊ" in ipa and "tˈɛst" in ipa
    de = phonemize("Guten Morgen", Voice("de"))
    assert de and de != phonemize("Guten Morgen")


def test_shipped_voices_and_clear_errors():
    assert {"en-us", "en-gb-x-rp", "de", "fr", "es"} <= set(espeak.languages())
    for lang in ("en-gb-x-rp", "fr"):  # every listed name is one espeak accepts
        assert len(synthesize("one", Voice(lang))) > 0
    assert len(espeak.languages()) > 100 and len(espeak.variants()) > 50
    assert {"m3", "f2"} <= set(espeak.variants())
    with pytest.raises(EspeakError, match="no voice 'xx-nowhere'"):
        synthesize("hi", Voice("xx-nowhere"))
    with pytest.raises(ValueError, match=r"Voice\.rate"):
        Voice(rate=10)
    assert Voice("en-us", "m3", 150, 40, 60).id == "en-us+m3:r150:p40:g60"


def test_concurrent_calls_are_serialised():
    text = "Concurrency should not mix up the audio."
    expected = synthesize(text)
    results = [None] * 4

    def work(i):
        results[i] = synthesize(text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    def envelope(w, n):  # frame RMS: robust to pitch-flutter phase differences
        return np.sqrt(np.mean(w[:n].reshape(-1, 256) ** 2, axis=1))

    # Interleaved callbacks would splice utterances together (about double length).
    for r in results:
        assert abs(len(r) - len(expected)) < 0.01 * len(expected)
        n = min(len(r), len(expected)) // 256 * 256
        assert np.corrcoef(envelope(r, n), envelope(expected, n))[0, 1] > 0.95


def test_language_switch_markers_are_removed():
    # "weekend" makes the French voice switch to English rules mid-clause
    ipa = espeak.phonemize("Nous partons ce weekend à la mer.", espeak.Voice("fr"))
    assert ipa and "(" not in ipa and ")" not in ipa
