"""Sentences that ship with the project, for the embedded espeak-ng corpus.

One UTF-8 file per language family, ``<family>.txt`` (``en.txt``, ``de.txt``; every
espeak voice of the family, ``en-us`` or ``en-gb-x-rp``, reads it):
one sentence per line; blank lines and lines starting with ``#`` are ignored. Sources
and licences are in ``SOURCES.md`` next to them. Every sentence is public domain or
written for this project.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent


@cache
def sentence_languages() -> tuple[str, ...]:
    """Languages with a sentence file, sorted."""
    return tuple(sorted(p.stem for p in _DIR.glob("*.txt")))


@cache
def load_sentences(language: str) -> tuple[str, ...]:
    """The sentences for ``language`` in file order (no duplicates)."""
    path = _DIR / f"{language}.txt"
    if not path.is_file():
        raise ValueError(f"no sentence list for language {language!r}; "
                         f"have {list(sentence_languages())}")
    out, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in seen:
            seen.add(line)
            out.append(line)
    return tuple(out)
