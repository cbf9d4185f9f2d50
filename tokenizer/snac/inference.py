"""Tokenize audio with SNAC and back: the library behind ``python -m tokenizer.snac.infer``
and ``tokenizer.snac.tokens``.

``SnacTokenizer.from_run(run_dir)`` loads a trained or converted model
(``tokenizer.snac.convert``). ``encode`` turns mono waveforms of any lengths into one
``SnacTokenFile`` each: codes per level ``int32 [T_l]``, coarse first. Each waveform is
loudness-normalised (the training level; undone by ``decode``) and right-padded with
zeros to a multiple of ``bucket_seconds`` (and of the codec's pad multiple), waveforms of
one padded length share a jitted batch, and the codes are cut to the waveform's own
``cfg.code_lengths(N)``. ``bucket_seconds=0`` pads exactly as the PyTorch package does
(the same codes as ``snac.SNAC.encode``), at one compile per distinct length. Loading,
loudness and checks are the shared ``tokenizer.codec.tokenizer.CodecTokenizer``'s.
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
      bucket_seconds: waveforms are right-padded to a multiple of this (and of the
        model's pad multiple); 0: to the pad multiple alone, as the PyTorch package.
    """

    codec_name = "SNAC"
    run_kind = "tokenizer.snac"
    config_type = SnacConfig
    token_file_type = SnacTokenFile
    model_hash = staticmethod(model_hash)

    def __init__(self, codec: SNAC, cfg: SnacConfig, *, bucket_seconds: float = 1.0,
                 **kwargs):
        super().__init__(codec, cfg, **kwargs)
        m = cfg.model
        bucket = round(bucket_seconds * m.sampling_rate)
        self.multiple = int(np.lcm(m.pad_multiple, bucket)) if bucket > 0 else m.pad_multiple

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

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices with equal padded lengths, ``batch_size`` at a time."""
        by_len: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            by_len.setdefault(round_up(n, self.multiple), []).append(i)
        return [idx[j:j + self.batch_size] for _, idx in sorted(by_len.items())
                for j in range(0, len(idx), self.batch_size)]

    def _encode_length(self, wav: np.ndarray) -> int:
        return wav.size

    def _encode_rows(self, rows: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Waveforms ``[N_i]`` of one padded length -> ``[codes_l [T_l]]`` each."""
        n = round_up(rows[0].size, self.multiple)
        batch = np.stack([np.pad(w, (0, n - w.size)) for w in self._fill(rows)])[..., None]
        codes = [np.asarray(c) for c in self._encode(self._state, batch)]
        return [[c[j, :k] for c, k in zip(codes, self.cfg.model.code_lengths(w.size),
                                           strict=True)]
                for j, w in enumerate(rows)]

    def _decode_length(self, tokens: SnacTokenFile) -> int:
        return tokens.num_samples

    def _decode_rows(self, rows: list[SnacTokenFile]) -> list[np.ndarray]:
        """Token files of one padded length -> waveforms ``[padded length]``."""
        lengths = self.cfg.model.code_lengths(round_up(rows[0].num_samples, self.multiple))
        batch = [np.stack([np.pad(t.codes[lvl], (0, lengths[lvl] - t.codes[lvl].size))
                           for t in self._fill(rows)])
                 for lvl in range(len(lengths))]
        wav = np.asarray(self._decode(self._state, batch))[..., 0]
        return [wav[j] for j in range(len(rows))]
