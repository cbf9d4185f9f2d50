"""Phonemes for transcripts that have none: espeak-ng IPA, the same engine and symbols as
the embedded corpus.

Real datasets (LJSpeech, LibriTTS, Common Voice, audio folders with transcripts, HF
datasets) carry text, not phonemes. The pipeline phonemizes a record's ``text`` when its
``phonemes`` field is empty (``PipelineConfig.phonemize``), with
``common.data.espeak.phonemize`` in the record's language: exactly what the corpus builder
writes into its ``phonemes`` column, so one symbol is one code point (``common.data.vocab``)
whichever source the phonemes came from.

Language: ``language`` (an override, ``SourceConfig.language``) when set, else the
record's own ``language`` field, else ``DEFAULT_LANGUAGE``. Codes are mapped onto espeak
voices by ``espeak_voice``: a voice name as it is ("en-us", "de", "pt-br"), a bare "en"
as "en-us" (the corpus's English voice; LJSpeech and LibriTTS label themselves "en" and
are American), a few locales espeak spells differently ("zh-CN" -> "cmn"), else the
language family ("fr-FR" -> "fr"). A code with no voice gives no phonemes (the pipeline
skips the utterance as ``no_phonemes``, naming the language).

Results are cached per process (``functools.lru_cache`` on text and voice): an epoch
after the first phonemizes nothing. espeak takes ~0.7 ms per sentence on one core.

``phoneme_vocab_for`` decides a source's phoneme vocabulary before a model is built: the
symbols of its phonemized transcripts (see its doc).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.data import espeak
from common.data.records import DataError
from common.data.vocab import Vocab

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en-us"
VOCAB_TEXTS = 20_000  # transcripts phonemized to decide a vocabulary (~15 s)

# Codes whose espeak voice is not the code itself nor its family.
_ALIASES = {"en": "en-us", "zh": "cmn", "zh-cn": "cmn", "zh-tw": "cmn", "zh-sg": "cmn",
            "zh-hk": "yue", "no": "nb", "pt-pt": "pt"}


@functools.cache
def espeak_voice(language: str) -> str | None:
    """The espeak language voice for a language code (case and ``_``/``-`` as any source
    writes them), or None when espeak has none. See the module doc for the mapping."""
    code = language.strip().lower().replace("_", "-")
    if not code:
        return None
    have = set(espeak.languages())
    for name in (code, code.split("-")[0]):
        if name in _ALIASES and _ALIASES[name] in have:
            return _ALIASES[name]
        if name in have:
            return name
    return None


def record_voice(rec: Mapping[str, Any], language: str = "") -> tuple[str | None, str]:
    """``(espeak voice or None, the language code it came from)`` for one record."""
    code = language or str(rec.get("language") or "") or DEFAULT_LANGUAGE
    return espeak_voice(code), code


@functools.lru_cache(maxsize=65_536)
def _phonemize(text: str, voice: str) -> str:
    return espeak.phonemize(text, espeak.Voice(language=voice))


def phonemize_text(text: str, voice: str) -> str:
    """espeak IPA of ``text`` in ``voice`` (a language voice), cached per process."""
    return _phonemize(" ".join(text.split()), voice)


def record_phonemes(rec: Mapping[str, Any], language: str = "") -> tuple[str, str]:
    """``(phonemes, why none)``: the record's own phonemes, else its text phonemized.

    ``why`` is "" when there are phonemes, else a detail for the skip message (no text,
    no espeak voice for the language, or espeak produced nothing, e.g. punctuation only).
    """
    if rec.get("phonemes"):
        return str(rec["phonemes"]), ""
    text = str(rec.get("text") or "").strip()
    if not text:
        return "", "no text to phonemize"
    voice, code = record_voice(rec, language)
    if voice is None:
        return "", (f"no espeak voice for language {code!r} (set SourceConfig.language, "
                    "--data.source.language, to an espeak voice such as en-us)")
    phonemes = phonemize_text(text, voice)
    return phonemes, "" if phonemes else f"espeak gave no phonemes ({voice}: {text[:40]!r})"


def phoneme_vocab_for(source: Sequence[Mapping[str, Any]], language: str = "", *,
                      max_texts: int = VOCAB_TEXTS, name: str = "") -> Vocab:
    """The phoneme vocabulary of ``source`` (usually the training split): every symbol of
    its records' phonemes (their own, or their transcripts phonemized as the pipeline
    does), specials first, sorted: the same construction as the corpus's
    ``phoneme_vocab.json``.

    Why from the data and not from espeak's symbol inventory: espeak has no list of the
    IPA symbols a language's rules can write, and the data's symbols are the ones CTC
    will see. At most ``max_texts`` records are read (evenly spaced, so the same ones on
    every host and run): a language's symbols saturate after a few thousand sentences,
    and a symbol seen only later maps to ``<unk>``, still a valid CTC target. Raises
    ``DataError`` when no record yields phonemes (no transcripts: train without CTC).
    """
    n = len(source)
    picks = (np.arange(n) if n <= max_texts
             else np.linspace(0, n - 1, max_texts).round().astype(np.int64))
    texts: list[str] = []
    why: Counter[str] = Counter()
    for i in picks:
        phonemes, reason = record_phonemes(source[int(i)], language)
        if phonemes:
            texts.append(phonemes)
        else:
            why[reason.split(" (")[0]] += 1  # the reason without its details
    where = name or getattr(source, "name", "source")
    if not texts:
        raise DataError(f"{where}: none of {len(picks)} utterances has phonemes or a "
                        f"transcript espeak can phonemize ({dict(why)}); a codec without "
                        "transcripts trains without CTC (--quantizer.phoneme-vocab N)")
    if why:
        log.warning("%s: %d of %d utterances have no phonemes (%s); they are skipped",
                    where, sum(why.values()), len(picks), dict(why))
    vocab = Vocab.from_texts(texts)
    log.info("%s: phoneme vocabulary of %d symbols from %d phonemized transcripts%s",
             where, len(vocab), len(texts), f" (of {n})" if n > len(picks) else "")
    return vocab
