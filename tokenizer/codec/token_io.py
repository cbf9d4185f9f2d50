"""What every codec's token files and tokenizers share: the ``.npz`` container with its
JSON metadata and format version, the token-file base (``CodecTokenFile``: the fields
decoding needs, save and load), the config digest that ties tokens to a model, and the
loudness normalisation whose gain a token file records so decoding can undo it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from common.data.transforms import normalize_loudness


class TokenFileError(ValueError):
    """A token file is unreadable or does not fit the codec; the message names it."""


def config_digest(d: Mapping[str, Any], length: int = 12) -> str:
    """A short sha256 of a JSON-able config dict (key order does not matter)."""
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def normalize_with_gain(wav: np.ndarray, target_dbfs: float | None
                        ) -> tuple[np.ndarray, float]:
    """``(wav scaled to target_dbfs, the gain in dB applied)``; None leaves it as is.
    Mono ``[N]`` float32; digital silence gets gain 0."""
    wav = np.asarray(wav, np.float32)
    if target_dbfs is None:
        return wav, 0.0
    scaled = normalize_loudness(wav, target_dbfs)
    peak_in = np.abs(wav).max(initial=0.0)
    gain = float(20 * np.log10(np.abs(scaled).max() / peak_in)) if peak_in > 0 else 0.0
    return scaled, gain


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
             version: int) -> Path:
    """``arrays`` and ``meta`` (JSON, with ``format_version``) in one ``.npz`` at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({**meta, "format_version": version})
    with path.open("wb") as f:  # a file object: np.savez would append .npz itself
        np.savez(f, meta=np.asarray(blob), **arrays)
    return path


def load_npz(path: str | Path, kind: str, version: int
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta without format_version)`` of a ``save_npz`` file; a missing,
    unreadable or other-version file raises ``TokenFileError`` naming it (``kind``: what
    the file should be, for the message)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: np.asarray(z[k]) for k in z.files if k != "meta"}
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TokenFileError(f"{path}: not {kind} ({e})") from e
    if not isinstance(meta, dict) or meta.pop("format_version", None) != version:
        raise TokenFileError(f"{path}: token file format is not version {version}")
    return arrays, meta


@dataclasses.dataclass(kw_only=True)
class CodecTokenFile:
    """One waveform's tokens and what decoding them needs; a codec's subclass adds the
    code layout (``codes`` and its metadata fields, all JSON-able: tuples are stored as
    lists and read back as tuples) and how ``codes`` maps to ``.npz`` arrays.

    Attributes:
      codes: the codes, laid out as the codec says.
      sample_rate: the waveform's rate; ``num_samples`` its length before padding.
      config_hash: the encoding codec's ``model_hash`` (decoding checks it).
      step: the checkpoint step that encoded it.
      gain_db: the loudness gain applied before encoding (decoding undoes it).
      source: the input file, when there was one.
    """

    kind: ClassVar[str] = "a token file"  # what the file should be, for messages
    format_version: ClassVar[int] = 1

    codes: Any
    sample_rate: int
    num_samples: int
    config_hash: str
    step: int
    gain_db: float = 0.0
    source: str = ""

    def code_arrays(self) -> dict[str, np.ndarray]:
        """``codes`` as the named int32 arrays of the ``.npz``."""
        raise NotImplementedError

    @classmethod
    def codes_from_arrays(cls, path: str | Path, arrays: Mapping[str, np.ndarray],
                          meta: Mapping[str, Any]) -> Any:
        """``codes`` back from the ``.npz`` arrays, checked (``TokenFileError``)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        meta = {k: v for k, v in dataclasses.asdict(self).items() if k != "codes"}
        return save_npz(path, self.code_arrays(), meta, self.format_version)

    @classmethod
    def load(cls, path: str | Path):
        """A saved token file; an unreadable, foreign or malformed one raises
        ``TokenFileError`` naming it."""
        arrays, meta = load_npz(path, cls.kind, cls.format_version)
        codes = cls.codes_from_arrays(path, arrays, meta)
        try:
            return cls(codes=codes, **{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in meta.items()})
        except TypeError as e:
            raise TokenFileError(f"{path}: bad metadata ({e})") from e
