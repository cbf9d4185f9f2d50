"""The utterance record every speech source yields and every pipeline consumes.

A record is a flat ``dict`` (grain moves dicts of strings, numbers and numpy arrays
between worker processes cheaply):

  id          str    unique within the source, stable across runs ("ljs/LJ001-0001")
  audio_path  str    absolute path of the audio file (any format libsndfile decodes)
  text        str    transcript ("" if unknown)
  phonemes    str    IPA phonemes, symbols as espeak writes them ("" if unknown)
  speaker     str    speaker id ("" if unknown)
  language    str    language code as the source names it ("en-us", "de", "" if unknown)
  duration    float  seconds, or -1.0 when the metadata does not say

Optional: ``audio_bytes`` (bytes of an encoded audio file, for hub datasets whose audio
is stored inline; ``audio_path`` then just names it).

Decoding (``common.data.bad_input.decode_record``) adds:

  audio        float32 [N]  mono waveform at the pipeline's sample rate
  sample_rate  int
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS = ("id", "audio_path", "text", "phonemes", "speaker", "language", "duration")
_DEFAULTS: dict[str, Any] = {"text": "", "phonemes": "", "speaker": "", "language": "",
                             "duration": -1.0}


class DataError(ValueError):
    """Bad data or metadata; the message names the file, row or field."""


def make_record(*, where: str = "", **fields: Any) -> dict[str, Any]:
    """A record with every field of ``FIELDS``, defaults filled, types checked.

    ``where`` (a file and row, say) is named in the error for a missing or bad field.
    Extra fields are kept: sources may carry more (gender, age, split).
    """
    rec = {**_DEFAULTS, **fields}
    for name in ("id", "audio_path"):
        if not rec.get(name):
            raise DataError(f"{where or 'record'}: missing field {name!r}")
    for name in FIELDS:
        if name == "duration":
            try:
                rec[name] = float(rec[name]) if rec[name] not in (None, "") else -1.0
            except (TypeError, ValueError) as e:
                raise DataError(f"{where or rec['id']}: field 'duration' is not a number: "
                                f"{rec[name]!r}") from e
        elif rec[name] is None:
            rec[name] = ""
        elif not isinstance(rec[name], str):
            rec[name] = str(rec[name])
    return rec


def check_record(rec: Mapping[str, Any]) -> None:
    """Raise ``DataError`` if ``rec`` lacks a field of ``FIELDS``."""
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise DataError(f"{rec.get('id', 'record')}: missing fields {missing}")
