"""The shipped sentence lists: size, hygiene, and that espeak can read them.

Every language file found by ``sentence_languages()`` is checked, so a new ``<family>.txt``
is covered without touching this file (add its voice to ``_VOICE`` if the family name is
not itself an espeak voice).
"""

import random
import unicodedata
from pathlib import Path

import pytest

from common.data import espeak, sentences
from common.data.espeak import Voice, phonemize
from common.data.sentences import load_sentences, sentence_languages

_DIR = Path(sentences.__file__).parent
_MIN_SENTENCES = 300
_MIN_SENTENCES_BY_LANGUAGE = {"en": 2000}
_MAX_CHARS = 300
_SAMPLE = 20
# Families whose file name is not itself the espeak voice we want ("en" is British).
_VOICE = {"en": "en-us", "zh": "cmn", "no": "nb"}


def _raw_lines(language: str) -> list[str]:
    """Non-blank, non-comment lines exactly as the loader sees them (stripped)."""
    text = (_DIR / f"{language}.txt").read_text(encoding="utf-8")
    return [s for s in (line.strip() for line in text.splitlines())
            if s and not s.startswith("#")]


def _voice_for(language: str) -> Voice:
    name = _VOICE.get(language, language)
    if name not in espeak.languages():
        raise AssertionError(f"{language}.txt: no espeak voice {name!r}; map the family to one "
                             f"of espeak.languages() in _VOICE of {Path(__file__).name}")
    return Voice(language=name)


def test_english_ships_with_the_others():
    assert "en" in sentence_languages()


@pytest.mark.parametrize("language", sentence_languages())
def test_enough_distinct_sentences(language):
    raw, loaded = _raw_lines(language), load_sentences(language)
    need = _MIN_SENTENCES_BY_LANGUAGE.get(language, _MIN_SENTENCES)
    assert len(loaded) >= need, f"{language}.txt: {len(loaded)} sentences, need {need}"
    # The loader drops repeats silently; the file itself should not have any.
    dupes = sorted({s for s in raw if raw.count(s) > 1}) if len(raw) != len(loaded) else []
    assert len(raw) == len(loaded), f"{language}.txt: duplicate lines {dupes[:5]}"


@pytest.mark.parametrize("language", sentence_languages())
def test_lines_are_clean(language):
    for n, line in enumerate(_raw_lines(language), 1):
        where = f"{language}.txt sentence {n} ({line[:40]!r})"
        assert len(line) <= _MAX_CHARS, f"{where}: {len(line)} chars > {_MAX_CHARS}"
        # Cc: tabs, NULs, escapes; Cf: zero-width joiners and BOMs that espeak may voice.
        bad = [hex(ord(c)) for c in line if unicodedata.category(c) in ("Cc", "Cf")]
        assert not bad, f"{where}: control characters {bad}"


@pytest.mark.parametrize("language", sentence_languages())
def test_a_seeded_sample_phonemizes(language):
    voice = _voice_for(language)
    pool = load_sentences(language)
    sample = random.Random(f"sentences-{language}").sample(pool, min(_SAMPLE, len(pool)))
    for s in sample:
        ipa = phonemize(s, voice)
        assert ipa.strip(), f"{language}.txt: espeak {voice.language} gave no IPA for {s!r}"
