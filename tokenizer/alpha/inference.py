"""Tokenize audio with a trained alpha codec and back: the library behind
``python -m tokenizer.alpha.infer`` and ``tokenizer.alpha.eval``.

``AlphaTokenizer.from_run(run_dir)`` loads the codec from a run directory alone (its
config travels in the checkpoint). ``encode`` turns a list of mono waveforms of any
lengths into one ``codes int32 [T_i, S]`` array per waveform, ``decode`` turns them back;
both batch the inputs (left-padded, which the codec handles exactly, so a file's codes do
not depend on what it was batched with) and pad lengths up to a bucket, so a folder of
files compiles a handful of shapes. A causal codec can do the same in chunks
(``stream=True``, ``tokenizer.alpha.streaming``) with identical codes.

Each waveform is first padded at the end with zeros to a whole number of frames (the
codec's hop), then scaled to the loudness the codec was trained at; ``TokenFile``
records the original length and that gain, so ``decode`` returns the input's length and
level. ``TokenFile`` is the ``.npz`` on disk: both stages' codes, stream names and
sizes, frame and sample rate, the model's config hash and the checkpoint step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from common.config import config_from_dict, config_to_dict
from common.train.checkpoint import Checkpointer, load_model
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.model import AlphaCodec, code_streams
from tokenizer.codec.token_io import (
    TokenFileError,
    config_digest,
    load_npz,
    normalize_with_gain,
    save_npz,
)
from tokenizer.codec.tokenizer import find_run

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# The parts of the config the codes depend on; training-only fields (losses, data,
# optimizer) may differ between two runs whose tokens are interchangeable.
MODEL_FIELDS = ("sample_rate", "codec", "quantizer")


def model_hash(cfg: AlphaConfig, length: int = 12) -> str:
    """Digest of the model-defining config fields (``MODEL_FIELDS``)."""
    d = config_to_dict(cfg)
    return config_digest({k: d[k] for k in MODEL_FIELDS}, length)


@dataclasses.dataclass
class TokenFile:
    """One waveform's tokens. ``codes int32 [T, S]``; ``num_samples`` the waveform's
    length at ``sample_rate`` before padding; ``gain_db`` the loudness gain applied
    before encoding (decoding undoes it)."""

    codes: np.ndarray
    streams: tuple[str, ...]
    codebook_sizes: tuple[int, ...]
    frame_rate: float
    sample_rate: int
    num_samples: int
    config_hash: str
    step: int
    gain_db: float = 0.0
    source: str = ""

    def save(self, path: str | Path) -> Path:
        meta = {k: v for k, v in dataclasses.asdict(self).items() if k != "codes"}
        return save_npz(path, {"codes": self.codes.astype(np.int32)}, meta, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> TokenFile:
        arrays, meta = load_npz(path, "an alpha token file", FORMAT_VERSION)
        if "codes" not in arrays:
            raise TokenFileError(f"{path}: not an alpha token file (no codes array)")
        codes = arrays["codes"]
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise TokenFileError(f"{path}: codes must be integer [T, S], got "
                                 f"{codes.dtype} {codes.shape}")
        try:
            return cls(codes=codes.astype(np.int32), **{
                **meta, "streams": tuple(meta["streams"]),
                "codebook_sizes": tuple(meta["codebook_sizes"])})
        except (TypeError, KeyError) as e:
            raise TokenFileError(f"{path}: bad metadata ({e})") from e


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class AlphaTokenizer:
    """Batched encode/decode of variable-length mono waveforms with one codec.

    Args:
      codec: the codec (put in eval mode); cfg: its config.
      step: the checkpoint step (recorded in token files).
      batch_size: waveforms per jitted call (a short last batch is filled with copies,
        so each bucket compiles once).
      bucket_seconds: batch lengths round up to a multiple of this (fewer shapes).
      loudness_dbfs: level to scale inputs to before encoding (the training data's; None:
        as given).
    """

    def __init__(self, codec: AlphaCodec, cfg: AlphaConfig, *, step: int = 0,
                 batch_size: int = 8, bucket_seconds: float = 1.0,
                 loudness_dbfs: float | None = None, run_dir: str | Path | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        codec.eval()
        self.codec, self.cfg, self.step, self.run_dir = codec, cfg, step, run_dir
        self.batch_size, self.loudness_dbfs = batch_size, loudness_dbfs
        self.hop = cfg.codec.hop
        self.bucket_frames = max(1, round(bucket_seconds * cfg.frame_rate))
        streams = code_streams(cfg.quantizer)
        self.streams = tuple(n for n, _ in streams)
        self.codebook_sizes = tuple(k for _, k in streams)
        self.config_hash = model_hash(cfg)
        graphdef, state = nnx.split(codec)
        self._state = state
        self._encode = jax.jit(lambda s, w, v: nnx.merge(graphdef, s).encode(w, v)[0])
        self._decode = jax.jit(lambda s, c, v: nnx.merge(graphdef, s).decode(c, v))
        self._streaming: dict[int, object] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path | None = None, *,
                 step: int | str | None = None, **kwargs) -> AlphaTokenizer:
        """The codec of a run directory (default: the newest under ``runs/``) at ``step``
        (an int, ``"latest"`` or ``"best"``); the training data's loudness by default."""
        run_dir = find_run(run_dir)
        step = Checkpointer(run_dir, read_only=True).resolve_step(step)
        codec, d = load_model(run_dir, lambda d: AlphaCodec(config_from_dict(AlphaConfig, d),
                                                             rngs=nnx.Rngs(0)), step=step)
        cfg = config_from_dict(AlphaConfig, d)
        kwargs.setdefault("loudness_dbfs", cfg.data.loudness_dbfs)
        log.info("alpha codec from %s step %d (config %s)", run_dir, step, model_hash(cfg))
        return cls(codec, cfg, step=step, run_dir=run_dir, **kwargs)

    # ------------------------------------------------------------------ helpers

    def _prepare(self, wav: np.ndarray) -> tuple[np.ndarray, float]:
        """Mono ``[N]`` -> (loudness-normalised, zero-padded to whole frames), gain dB."""
        wav = np.asarray(wav, np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"expected a non-empty mono waveform [N], got shape {wav.shape}")
        wav, gain_db = normalize_with_gain(wav, self.loudness_dbfs)
        return np.pad(wav, (0, _round_up(wav.size, self.hop) - wav.size)), gain_db

    def _batches(self, n: int, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped ``batch_size`` at a time, sorted by length (less padding)."""
        order = sorted(range(n), key=lambda i: lengths[i])
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def _fill(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return rows + [rows[0]] * (self.batch_size - len(rows))

    def streaming(self, chunk_frames: int):
        """The ``StreamingCodec`` (one per chunk size, kept) over ``batch_size`` streams."""
        from tokenizer.alpha.streaming import StreamingCodec

        if chunk_frames not in self._streaming:
            self._streaming[chunk_frames] = StreamingCodec(
                self.codec, batch=self.batch_size, chunk_frames=chunk_frames)
        return self._streaming[chunk_frames]

    # ------------------------------------------------------------------ encode / decode

    def encode(self, wavs: Sequence[np.ndarray], *, stream: bool = False,
               chunk_frames: int = 25, progress: Callable[[int], None] | None = None
               ) -> list[TokenFile]:
        """Mono waveforms ``[N_i]`` at ``cfg.sample_rate`` -> one ``TokenFile`` each
        (``codes [ceil(N_i / hop), S]``). ``stream``: chunk by chunk through the causal
        codec (same codes); ``progress(k)`` is called after each batch of k inputs."""
        prepared = [self._prepare(w) for w in wavs]
        frames = [p.size // self.hop for p, _ in prepared]
        out: list[np.ndarray | None] = [None] * len(wavs)
        for idx in self._batches(len(wavs), frames):
            rows = [prepared[i][0] for i in idx]
            if stream:
                codes = self._encode_stream(rows, chunk_frames)
                for j, i in enumerate(idx):
                    out[i] = codes[j, :frames[i]]
            else:
                t = _round_up(max(frames[i] for i in idx), self.bucket_frames)
                wav = np.zeros((self.batch_size, t * self.hop, 1), np.float32)
                valid = np.zeros(wav.shape[:2], bool)
                for j, r in enumerate(self._fill(rows)):  # left padding
                    wav[j, wav.shape[1] - r.size:, 0], valid[j, wav.shape[1] - r.size:] = r, True
                codes = np.asarray(self._encode(self._state, wav, valid))
                for j, i in enumerate(idx):
                    out[i] = codes[j, t - frames[i]:]
            if progress is not None:
                progress(len(idx))
        return [TokenFile(codes=c, streams=self.streams, codebook_sizes=self.codebook_sizes,
                          frame_rate=self.cfg.frame_rate, sample_rate=self.cfg.sample_rate,
                          num_samples=int(np.asarray(w).size), config_hash=self.config_hash,
                          step=self.step, gain_db=g)
                for c, w, (_, g) in zip(out, wavs, prepared, strict=True)]

    def _encode_stream(self, rows: list[np.ndarray], chunk_frames: int) -> np.ndarray:
        # Right padding: a causal codec's codes for a frame never see later samples,
        # so padding every stream to the longest (and a whole chunk) changes nothing.
        step = chunk_frames * self.hop
        n = _round_up(max(r.size for r in rows), step)
        wav = np.stack([np.pad(r, (0, n - r.size)) for r in self._fill(rows)])[..., None]
        return self.streaming(chunk_frames).encode(wav)

    def check(self, tokens: TokenFile, name: str = "tokens") -> None:
        """Raise ``TokenFileError`` unless ``tokens`` came from a codec like this one."""
        where = f" (checkpoint {self.run_dir})" if self.run_dir else ""
        if tokens.config_hash != self.config_hash:
            raise TokenFileError(
                f"{name}: encoded by a codec with config {tokens.config_hash}, but this "
                f"codec{where} has config {self.config_hash}; decode with the run that "
                "encoded it")
        if tokens.codes.shape[1] != len(self.streams):
            raise TokenFileError(f"{name}: {tokens.codes.shape[1]} code streams, the codec "
                                 f"has {len(self.streams)} {self.streams}")
        high = tokens.codes.max(axis=0, initial=0)
        low = tokens.codes.min(axis=0, initial=0)
        for s, (hi, lo, size) in enumerate(zip(high, low, self.codebook_sizes, strict=True)):
            if lo < 0 or hi >= size:
                raise TokenFileError(f"{name}: stream {self.streams[s]} has codes in "
                                     f"[{lo}, {hi}], outside its codebook of {size}")

    def decode(self, tokens: Sequence[TokenFile], *, stream: bool = False,
               chunk_frames: int = 25, names: Sequence[str] | None = None,
               progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Token files -> mono float32 waveforms ``[num_samples]`` at their input level."""
        for i, t in enumerate(tokens):
            self.check(t, names[i] if names else f"tokens[{i}]")
        frames = [t.codes.shape[0] for t in tokens]
        out: list[np.ndarray | None] = [None] * len(tokens)
        for idx in self._batches(len(tokens), frames):
            rows = [tokens[i].codes for i in idx]
            if stream:
                n = _round_up(max(frames[i] for i in idx), chunk_frames)
                codes = np.stack([np.pad(c, ((0, n - c.shape[0]), (0, 0)))
                                  for c in self._fill(rows)])
                wav = self.streaming(chunk_frames).decode(codes)[..., 0]
                segs = [wav[j, :frames[i] * self.hop] for j, i in enumerate(idx)]
            else:
                t = _round_up(max(frames[i] for i in idx), self.bucket_frames)
                codes = np.zeros((self.batch_size, t, len(self.streams)), np.int32)
                valid = np.zeros((self.batch_size, t), bool)
                for j, c in enumerate(self._fill(rows)):
                    codes[j, t - c.shape[0]:], valid[j, t - c.shape[0]:] = c, True
                wav = np.asarray(self._decode(self._state, codes, valid))[..., 0]
                segs = [wav[j, (t - frames[i]) * self.hop:] for j, i in enumerate(idx)]
            for seg, i in zip(segs, idx, strict=True):
                gain = np.float32(10 ** (-tokens[i].gain_db / 20))
                out[i] = (seg[:tokens[i].num_samples] * gain).astype(np.float32)
            if progress is not None:
                progress(len(idx))
        return out
