"""Symbol vocabularies for text and phoneme tokenisation (CTC and TTS paths).

A symbol is one Unicode code point of the string (IPA phonemes as espeak writes them:
``ˈ``, ``ː`` and combining marks are symbols of their own, as in VITS-style phoneme
inputs). Id 0 is ``<blank>``: the CTC blank and the padding id; then ``<unk>``,
``<bos>``, ``<eos>``; then the symbols in sorted order, so a vocabulary built from the
same texts is the same on every host.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SPECIALS = ("<blank>", "<unk>", "<bos>", "<eos>")
BLANK, UNK, BOS, EOS = range(4)
PAD = BLANK


class Vocab:
    """A fixed symbol table: ``encode`` strings to int32 ids and ``decode`` back."""

    def __init__(self, symbols: Iterable[str]):
        symbols = list(symbols)
        if tuple(symbols[: len(SPECIALS)]) != SPECIALS:
            symbols = list(SPECIALS) + [s for s in symbols if s not in SPECIALS]
        if len(set(symbols)) != len(symbols):
            raise ValueError("Vocab symbols must be unique")
        self.symbols = tuple(symbols)
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        """Every code point that occurs in ``texts``, sorted."""
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        return cls(list(SPECIALS) + sorted(seen))

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """int32 ``[L]`` ids; unknown symbols map to ``UNK``."""
        ids = [self._ids.get(ch, UNK) for ch in text]
        return np.asarray(([BOS] if bos else []) + ids + ([EOS] if eos else []), np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Symbols of ``ids``, skipping blanks/padding and the other specials."""
        return "".join(self.symbols[i] for i in map(int, ids) if i >= len(SPECIALS))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"symbols": list(self.symbols)}, ensure_ascii=False,
                                   indent=0) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["symbols"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a vocabulary file ({e})") from e
