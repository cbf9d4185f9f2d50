"""Tokenize audio with SNAC and back: the library behind ``python -m tokenizer.snac.infer``
and ``tokenizer.snac.tokens``.

``SnacTokenizer.from_run(run_dir)`` loads a trained or converted model
(``tokenizer.snac.convert``). ``encode`` turns mono waveforms of any lengths into one
``SnacTokenFile`` each: codes per level ``int32 [T_l]``, coarse first. Each waveform is
loudness-normalised to the run's training level if it had one (undone by ``decode``; a
converted published model has none: it was trained on audio as recorded) and
right-padded with zeros to the codec's pad multiple (2048 samples at 24 kHz), rounded up
to buckets of about ``bucket_seconds`` (a whole number of pad multiples, so that fewer
lengths compile); waveforms of one padded length share a jitted call and the codes are
cut to the waveform's own ``cfg.code_lengths(N)``. A call holds at most ``batch_size``
waveforms and ``max_batch_seconds`` of padded audio; a short last batch is padded with
silent rows to a power of two (a few shapes, never copies of a long file).
``parity=True`` is the PyTorch package's ``encode``: padding to the pad multiple alone
and no loudness change (the same codes as ``snac.SNAC.encode``), one compile per
distinct length. Loading, loudness, the memory check and the token-file checks are the
shared ``tokenizer.codec.tokenizer.CodecTokenizer``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from common.config import config_to_dict
from common.data.batching import round_up
from tokenizer.codec.token_io import CodecTokenFile, TokenFileError, config_digest
from tokenizer.codec.tokenizer import CodecTokenizer
from tokenizer.snac.model import SNAC
from tokenizer.snac.train_config import SnacConfig


def model_hash(cfg: SnacConfig, length: int = 12) -> str:
    """Digest of the architecture (``cfg.model`` without its compute dtype): token files
    of two runs with the same hash fit each other's decoder shapes."""
    d = config_to_dict(cfg)["model"]
    d.pop("dtype", None)
    return config_digest(d, length)


@dataclasses.dataclass(kw_only=True)
class SnacTokenFile(CodecTokenFile):
    """One waveform's codes: ``codes[l] int32 [T_l]`` with ``T_l = T_last / strides[l]``,
    coarse first, all from one codebook of ``codebook_size``; the fields every token file
    has are ``CodecTokenFile``'s."""

    kind = "a SNAC token file"

    codes: list[np.ndarray]
    strides: tuple[int, ...]
    codebook_size: int

    def code_arrays(self) -> dict[str, np.ndarray]:
        return {f"codes_{i}": np.asarray(c, np.int32) for i, c in enumerate(self.codes)}

    @classmethod
    def codes_from_arrays(cls, path, arrays, meta) -> list[np.ndarray]:
        try:
            codes = [arrays[f"codes_{i}"] for i in range(len(meta["strides"]))]
        except (KeyError, TypeError) as e:
            raise TokenFileError(f"{path}: not a SNAC token file (missing {e})") from e
        if any(c.ndim != 1 or not np.issubdtype(c.dtype, np.integer) for c in codes):
            raise TokenFileError(f"{path}: codes must be 1-D integer arrays")
        return [c.astype(np.int32) for c in codes]


class SnacTokenizer(CodecTokenizer[SnacTokenFile]):
    """Batched encode/decode of variable-length mono waveforms with one SNAC model.

    Args (besides ``CodecTokenizer``'s):
      bucket_seconds: padded lengths round up to multiples of this (in whole pad
        multiples of the model; 0: the pad multiple alone, as the PyTorch package).
      max_batch_seconds: padded audio per model call (long files go alone; 0: no cap).
      parity: the PyTorch package's padding and no loudness change (overrides
        ``bucket_seconds`` and ``loudness_dbfs``).
    """

    codec_name = "SNAC"
    run_kind = "tokenizer.snac"
    config_type = SnacConfig
    token_file_type = SnacTokenFile
    model_hash = staticmethod(model_hash)

    def __init__(self, codec: SNAC, cfg: SnacConfig, *, bucket_seconds: float = 1.0,
                 max_batch_seconds: float = 32.0, parity: bool = False, **kwargs):
        if parity:
            bucket_seconds, kwargs["loudness_dbfs"] = 0.0, None
        super().__init__(codec, cfg, **kwargs)
        m = cfg.model
        if bucket_seconds < 0 or max_batch_seconds < 0:
            raise ValueError(f"bucket_seconds and max_batch_seconds must be >= 0, got "
                             f"{bucket_seconds} and {max_batch_seconds}")
        # A whole number of pad multiples near the bucket, not their lcm (which, for a
        # 1 s bucket at 24 kHz, is 32 s).
        self.multiple = m.pad_multiple * max(
            1, round(bucket_seconds * m.sampling_rate / m.pad_multiple))
        self.max_batch_samples = round(max_batch_seconds * m.sampling_rate)

    @classmethod
    def build_model(cls, cfg: SnacConfig) -> SNAC:
        return SNAC(cfg.model, rngs=nnx.Rngs(0))

    @property
    def sample_rate(self) -> int:
        return self.cfg.model.sampling_rate

    @staticmethod
    def _model_encode(model: SNAC, wav):
        return model.encode(wav)

    @staticmethod
    def _model_decode(model: SNAC, codes):
        return model.decode(codes)

    def _token_fields(self) -> dict[str, Any]:
        m = self.cfg.model
        return {"strides": m.vq_strides, "codebook_size": m.codebook_size}

    def _check_layout(self, tokens: SnacTokenFile, name: str) -> None:
        strides = self.cfg.model.vq_strides
        if tuple(tokens.strides) != strides:
            raise TokenFileError(f"{name}: strides {tokens.strides}, the model has {strides}")

    def _code_streams(self, tokens: SnacTokenFile) -> list[tuple[str, np.ndarray, int]]:
        size = self.cfg.model.codebook_size
        return [(f"level {lvl}", c, size) for lvl, c in enumerate(tokens.codes)]

    def _rows(self, padded: int) -> int:
        """Waveforms per call at this padded length: ``batch_size``, fewer for long ones."""
        if not self.max_batch_samples:
            return self.batch_size
        return max(1, min(self.batch_size, self.max_batch_samples // padded))

    def _call_rows(self, n: int, padded: int) -> int:
        """Rows of the call that carries ``n`` waveforms: the next power of two, at most
        ``_rows`` (a full batch stays as it is)."""
        return min(self._rows(padded), 1 << (n - 1).bit_length())

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices with equal padded lengths, ``_rows`` at a time."""
        by_len: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            by_len.setdefault(round_up(n, self.multiple), []).append(i)
        out = []
        for padded, idx in sorted(by_len.items()):
            k = self._rows(padded)
            out += [idx[j:j + k] for j in range(0, len(idx), k)]
        return out

    def _encode_length(self, wav: np.ndarray) -> int:
        return wav.size

    def _encode_rows(self, rows: list[np.ndarray], *,
                     names: Sequence[str] = ()) -> list[list[np.ndarray]]:
        """Waveforms ``[N_i]`` of one padded length -> ``[codes_l [T_l]]`` each."""
        n = round_up(rows[0].size, self.multiple)
        batch = np.zeros((self._call_rows(len(rows), n), n, 1), np.float32)
        for j, w in enumerate(rows):
            batch[j, :w.size, 0] = w
        codes = [np.asarray(c) for c in self._call(self._encode, batch, names=names)]
        return [[c[j, :k] for c, k in zip(codes, self.cfg.model.code_lengths(w.size),
                                           strict=True)]
                for j, w in enumerate(rows)]

    def _decode_length(self, tokens: SnacTokenFile) -> int:
        return tokens.num_samples

    def _decode_rows(self, rows: list[SnacTokenFile], *,
                     names: Sequence[str] = ()) -> list[np.ndarray]:
        """Token files of one padded length -> waveforms ``[padded length]``."""
        n = round_up(rows[0].num_samples, self.multiple)
        lengths = self.cfg.model.code_lengths(n)
        batch = [np.zeros((self._call_rows(len(rows), n), t), np.int32) for t in lengths]
        for j, tok in enumerate(rows):
            for lvl, c in enumerate(tok.codes):
                batch[lvl][j, :c.size] = c
        wav = np.asarray(self._call(self._decode, batch, names=names))[..., 0]
        return [wav[j] for j in range(len(rows))]
