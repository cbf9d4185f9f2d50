"""Tokenize audio with a trained alpha codec and back: the library behind
``python -m tokenizer.alpha.infer`` and ``tokenizer.alpha.eval``.

``AlphaTokenizer.from_run(run_dir)`` loads the codec from a run directory alone (its
config travels in the checkpoint). ``encode`` turns a list of mono waveforms of any
lengths into one ``codes int32 [T_i, S]`` array per waveform, ``decode`` turns them back;
both batch the inputs (left-padded, which the codec handles exactly, so a file's codes do
not depend on what it was batched with) and pad lengths up to a bucket, so a folder of
files compiles a handful of shapes. A causal codec can do the same in chunks
(``stream=True``, ``tokenizer.alpha.streaming``) with identical codes. Loading, batching,
loudness and checks are the shared ``tokenizer.codec.tokenizer.CodecTokenizer``'s.

Each waveform is scaled to the loudness the codec was trained at, then padded at the end
with zeros to a whole number of frames (the codec's hop); ``TokenFile`` records the
original length and that gain, so ``decode`` returns the input's length and level.
``TokenFile`` is the ``.npz`` on disk: both stages' codes, stream names and sizes, frame
and sample rate, the model's config hash and the checkpoint step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from common.config import config_to_dict
from common.data.batching import round_up
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.model import AlphaCodec, code_streams
from tokenizer.codec.token_io import CodecTokenFile, TokenFileError, config_digest
from tokenizer.codec.tokenizer import CodecTokenizer

# The parts of the config the codes depend on; training-only fields (losses, data,
# optimizer) may differ between two runs whose tokens are interchangeable.
MODEL_FIELDS = ("sample_rate", "codec", "quantizer")


def model_hash(cfg: AlphaConfig, length: int = 12) -> str:
    """Digest of the model-defining config fields (``MODEL_FIELDS``)."""
    d = config_to_dict(cfg)
    return config_digest({k: d[k] for k in MODEL_FIELDS}, length)


@dataclasses.dataclass(kw_only=True)
class TokenFile(CodecTokenFile):
    """One waveform's tokens: ``codes int32 [T, S]``, one column per code stream
    (``streams`` names them, ``codebook_sizes`` their sizes), ``frame_rate`` frames per
    second; the fields every token file has are ``CodecTokenFile``'s."""

    kind = "an alpha token file"

    codes: np.ndarray
    streams: tuple[str, ...]
    codebook_sizes: tuple[int, ...]
    frame_rate: float

    def code_arrays(self) -> dict[str, np.ndarray]:
        return {"codes": self.codes.astype(np.int32)}

    @classmethod
    def codes_from_arrays(cls, path, arrays, meta) -> np.ndarray:
        if "codes" not in arrays:
            raise TokenFileError(f"{path}: not an alpha token file (no codes array)")
        codes = arrays["codes"]
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise TokenFileError(f"{path}: codes must be integer [T, S], got "
                                 f"{codes.dtype} {codes.shape}")
        return codes.astype(np.int32)


class AlphaTokenizer(CodecTokenizer[TokenFile]):
    """Batched encode/decode of variable-length mono waveforms with one alpha codec.

    Args (besides ``CodecTokenizer``'s):
      bucket_seconds: batch lengths round up to a multiple of this (fewer shapes).
    """

    codec_name = "alpha codec"
    run_kind = "tokenizer.alpha"
    config_type = AlphaConfig
    token_file_type = TokenFile
    model_hash = staticmethod(model_hash)

    def __init__(self, codec: AlphaCodec, cfg: AlphaConfig, *, bucket_seconds: float = 1.0,
                 **kwargs):
        super().__init__(codec, cfg, **kwargs)
        self.hop = cfg.codec.hop
        self.bucket_frames = max(1, round(bucket_seconds * cfg.frame_rate))
        streams = code_streams(cfg.quantizer)
        self.streams = tuple(n for n, _ in streams)
        self.codebook_sizes = tuple(k for _, k in streams)
        self._streaming: dict[int, object] = {}

    @classmethod
    def build_model(cls, cfg: AlphaConfig) -> AlphaCodec:
        return AlphaCodec(cfg, rngs=nnx.Rngs(0))

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @staticmethod
    def _model_encode(model: AlphaCodec, wav, valid):
        return model.encode(wav, valid)[0]

    @staticmethod
    def _model_decode(model: AlphaCodec, codes, valid):
        return model.decode(codes, valid)

    def _token_fields(self) -> dict[str, Any]:
        return {"streams": self.streams, "codebook_sizes": self.codebook_sizes,
                "frame_rate": self.cfg.frame_rate}

    def _check_layout(self, tokens: TokenFile, name: str) -> None:
        if tokens.codes.shape[1] != len(self.streams):
            raise TokenFileError(f"{name}: {tokens.codes.shape[1]} code streams, the codec "
                                 f"has {len(self.streams)} {self.streams}")

    def _code_streams(self, tokens: TokenFile) -> list[tuple[str, np.ndarray, int]]:
        return [(f"stream {n}", tokens.codes[:, s], k)
                for s, (n, k) in enumerate(zip(self.streams, self.codebook_sizes,
                                               strict=True))]

    def streaming(self, chunk_frames: int):
        """The ``StreamingCodec`` (one per chunk size, kept) over ``batch_size`` streams."""
        from tokenizer.alpha.streaming import StreamingCodec

        if chunk_frames not in self._streaming:
            self._streaming[chunk_frames] = StreamingCodec(
                self.codec, batch=self.batch_size, chunk_frames=chunk_frames)
        return self._streaming[chunk_frames]

    # ------------------------------------------------------------------ encode

    def _encode_length(self, wav: np.ndarray) -> int:
        return -(-wav.size // self.hop)  # frames

    def _encode_rows(self, rows: list[np.ndarray], *, stream: bool = False,
                     chunk_frames: int = 25, names: Sequence[str] = ()) -> list[np.ndarray]:
        """Waveforms ``[N_i]`` -> ``codes [ceil(N_i / hop), S]`` each. ``stream``: chunk
        by chunk through the causal codec (same codes)."""
        rows = [np.pad(r, (0, round_up(r.size, self.hop) - r.size)) for r in rows]
        frames = [r.size // self.hop for r in rows]
        if stream:
            codes = self._encode_stream(rows, chunk_frames)
            return [codes[j, :f] for j, f in enumerate(frames)]
        t = round_up(max(frames), self.bucket_frames)
        wav = np.zeros((self.batch_size, t * self.hop, 1), np.float32)
        valid = np.zeros(wav.shape[:2], bool)
        for j, r in enumerate(self._fill(rows)):  # left padding
            wav[j, wav.shape[1] - r.size:, 0], valid[j, wav.shape[1] - r.size:] = r, True
        codes = np.asarray(self._call(self._encode, wav, valid, names=names))
        return [codes[j, t - f:] for j, f in enumerate(frames)]

    def _encode_stream(self, rows: list[np.ndarray], chunk_frames: int) -> np.ndarray:
        # Right padding: a causal codec's codes for a frame never see later samples,
        # so padding every stream to the longest (and a whole chunk) changes nothing.
        step = chunk_frames * self.hop
        n = round_up(max(r.size for r in rows), step)
        wav = np.stack([np.pad(r, (0, n - r.size)) for r in self._fill(rows)])[..., None]
        return self.streaming(chunk_frames).encode(wav)

    # ------------------------------------------------------------------ decode

    def _decode_length(self, tokens: TokenFile) -> int:
        return tokens.codes.shape[0]

    def _decode_rows(self, rows: list[TokenFile], *, stream: bool = False,
                     chunk_frames: int = 25, names: Sequence[str] = ()) -> list[np.ndarray]:
        """Token files -> waveforms ``[frames * hop]``. ``stream``: chunk by chunk."""
        codes_in = [t.codes for t in rows]
        frames = [c.shape[0] for c in codes_in]
        if stream:
            n = round_up(max(frames), chunk_frames)
            codes = np.stack([np.pad(c, ((0, n - c.shape[0]), (0, 0)))
                              for c in self._fill(codes_in)])
            wav = self.streaming(chunk_frames).decode(codes)[..., 0]
            return [wav[j, :f * self.hop] for j, f in enumerate(frames)]
        t = round_up(max(frames), self.bucket_frames)
        codes = np.zeros((self.batch_size, t, len(self.streams)), np.int32)
        valid = np.zeros((self.batch_size, t), bool)
        for j, c in enumerate(self._fill(codes_in)):
            codes[j, t - c.shape[0]:], valid[j, t - c.shape[0]:] = c, True
        wav = np.asarray(self._call(self._decode, codes, valid, names=names))[..., 0]
        return [wav[j, (t - f) * self.hop:] for j, f in enumerate(frames)]
