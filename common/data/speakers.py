"""Synthetic speakers for the embedded espeak-ng corpus, drawn deterministically from a seed.

A speaker is an ``espeak.Voice``: a language voice, a human-sounding variant and prosody
(rate, pitch, pitch range); its id is ``Voice.id``, which names every setting, so the same
settings are the same speaker in every corpus. Every language gets at least one speaker
(when there are enough), the rest are spread by the language weights.

The variant list is curated: robots, whisper, croak and the like are left out, and a
variant is used with a language only if espeak accepts the pair (``espeak_SetVoiceByName``
returns 0). That check does not depend on call history, so the draw stays deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cache

import numpy as np

from common.data import espeak
from common.data.espeak import EspeakError, Voice

# Variants that sound like a person (checked by ear in espeak-ng 1.52's voices/!v).
CURATED_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Annie", "Gene", "Hugo", "Lee", "Mario", "Michael", "adam", "anika", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma", "grandpa",
    "gustave", "ian", "john", "linda", "max", "michel", "miguel", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "travis", "victor", "zac",
)
RATE_RANGE = (130, 220)  # words per minute, inclusive
PITCH_RANGE = (25, 75)
PITCH_SPAN_RANGE = (20, 80)  # espeak's "range" parameter

# Independent random streams of one corpus seed (SeedSequence entropy words).
_SPEAKER_STREAM = 1
_HOLDOUT_STREAM = 2


class SpeakerError(ValueError):
    """A language espeak does not accept, or a speaker plan that cannot be met."""


def human_variants() -> tuple[str, ...]:
    """``CURATED_VARIANTS`` that this espeak-ng data ships, in curated order."""
    shipped = set(espeak.variants())
    return tuple(v for v in CURATED_VARIANTS if v in shipped)


@cache
def voice_accepted(language: str, variant: str = "") -> bool:
    """Whether espeak accepts ``language+variant`` (some names fail; see FIELD-NOTES)."""
    try:
        espeak.phonemize("a", Voice(language, variant))
    except EspeakError:
        return False
    return True


@cache
def accepted_variants(language: str) -> tuple[str, ...]:
    """The human variants espeak accepts with ``language``, in curated order."""
    return tuple(v for v in human_variants() if voice_accepted(language, v))


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A corpus speaker: its voice, and whether it is held out (test split only)."""

    voice: Voice
    unseen: bool = False

    @property
    def id(self) -> str:
        return self.voice.id

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self.voice), "unseen": self.unseen}


def plan_speakers(languages: Sequence[str], weights: Sequence[float], num_speakers: int,
                  seed: int, *, holdout_speakers: int = 0,
                  holdout_languages: Sequence[str] = ()) -> tuple[Speaker, ...]:
    """``num_speakers`` distinct speakers, a deterministic function of the arguments.

    Speaker ``i < len(languages)`` speaks ``languages[i]`` (every language is covered);
    the others draw a language by ``weights``. All speakers of ``holdout_languages`` and
    ``holdout_speakers`` more, drawn among the rest, are ``unseen``.

    Raises ``SpeakerError`` for a language espeak rejects or a hold-out that would leave
    no seen speaker.
    """
    languages = tuple(languages)
    if len(weights) != len(languages) or not languages:
        raise SpeakerError(f"need one weight per language, got {len(weights)} weights for "
                           f"{len(languages)} languages")
    for lang in languages:
        if not voice_accepted(lang):
            raise SpeakerError(f"espeak-ng rejects language voice {lang!r}; see "
                               "common.data.espeak.languages() for the names it ships")
    p = np.asarray(weights, np.float64)
    p = p / p.sum()
    rng = np.random.default_rng([seed, _SPEAKER_STREAM])
    voices: list[Voice] = []
    seen: set[str] = set()
    for i in range(num_speakers):
        lang = languages[i] if i < len(languages) else languages[int(rng.choice(len(p), p=p))]
        variants = accepted_variants(lang) or ("",)
        for _ in range(1000):  # redraw the rare exact duplicate of an earlier speaker
            voice = Voice(lang, variants[int(rng.integers(len(variants)))],
                          rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                          pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                          range=int(rng.integers(PITCH_SPAN_RANGE[0], PITCH_SPAN_RANGE[1] + 1)))
            if voice.id not in seen:
                break
        else:
            raise SpeakerError(f"cannot draw {num_speakers} distinct speakers")
        seen.add(voice.id)
        voices.append(voice)

    held_langs = set(holdout_languages)
    candidates = [i for i, v in enumerate(voices) if v.language not in held_langs]
    if holdout_speakers >= len(candidates):
        raise SpeakerError(
            f"holdout_speakers={holdout_speakers} leaves no seen speaker: only "
            f"{len(candidates)} of {num_speakers} speakers are outside holdout_languages "
            f"{sorted(held_langs)}")
    order = np.random.default_rng([seed, _HOLDOUT_STREAM]).permutation(len(candidates))
    held = {candidates[int(j)] for j in order[:holdout_speakers]}
    return tuple(Speaker(v, unseen=v.language in held_langs or i in held)
                 for i, v in enumerate(voices))
