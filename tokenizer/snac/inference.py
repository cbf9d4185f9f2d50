"""Tokenize audio with SNAC and back: the library behind ``python -m tokenizer.snac.infer``
and ``tokenizer.snac.tokens``.

``SnacTokenizer.from_run(run_dir)`` loads a trained or converted model
(``tokenizer.snac.convert``). ``encode`` turns mono waveforms of any lengths into one
``SnacTokenFile`` each: codes per level ``int32 [T_l]``, coarse first. Each waveform is
loudness-normalised (the training level; undone by ``decode``) and right-padded with
zeros to a multiple of ``bucket_seconds`` (and of the codec's pad multiple), waveforms of
one padded length share a jitted batch, and the codes are cut to the waveform's own
``cfg.code_lengths(N)``. ``bucket_seconds=0`` pads exactly as the PyTorch package does
(the same codes as ``snac.SNAC.encode``), at one compile per distinct length.
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
from tokenizer.codec.token_io import (
    TokenFileError,
    config_digest,
    load_npz,
    normalize_with_gain,
    save_npz,
)
from tokenizer.codec.tokenizer import find_run
from tokenizer.snac.model import SNAC
from tokenizer.snac.train_config import SnacConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def model_hash(cfg: SnacConfig, length: int = 12) -> str:
    """Digest of the architecture (``cfg.model`` without its compute dtype): token files
    of two runs with the same hash fit each other's decoder shapes."""
    d = config_to_dict(cfg)["model"]
    d.pop("dtype", None)
    return config_digest(d, length)


@dataclasses.dataclass
class SnacTokenFile:
    """One waveform's codes: ``codes[l] int32 [T_l]`` with ``T_l = T_last / strides[l]``."""

    codes: list[np.ndarray]
    strides: tuple[int, ...]
    codebook_size: int
    sample_rate: int
    num_samples: int
    config_hash: str
    step: int
    gain_db: float = 0.0
    source: str = ""

    def save(self, path: str | Path) -> Path:
        meta = {k: v for k, v in dataclasses.asdict(self).items() if k != "codes"}
        arrays = {f"codes_{i}": np.asarray(c, np.int32) for i, c in enumerate(self.codes)}
        return save_npz(path, arrays, meta, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> SnacTokenFile:
        arrays, meta = load_npz(path, "a SNAC token file", FORMAT_VERSION)
        try:
            codes = [arrays[f"codes_{i}"] for i in range(len(meta["strides"]))]
        except (KeyError, TypeError) as e:
            raise TokenFileError(f"{path}: not a SNAC token file (missing {e})") from e
        if any(c.ndim != 1 or not np.issubdtype(c.dtype, np.integer) for c in codes):
            raise TokenFileError(f"{path}: codes must be 1-D integer arrays")
        try:
            return cls(codes=[c.astype(np.int32) for c in codes],
                       **{**meta, "strides": tuple(meta["strides"])})
        except TypeError as e:
            raise TokenFileError(f"{path}: bad metadata ({e})") from e


class SnacTokenizer:
    """Batched encode/decode of variable-length mono waveforms with one SNAC model."""

    def __init__(self, codec: SNAC, cfg: SnacConfig, *, step: int = 0, batch_size: int = 8,
                 bucket_seconds: float = 1.0, loudness_dbfs: float | None = None,
                 run_dir: str | Path | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.codec, self.cfg, self.step, self.run_dir = codec, cfg, step, run_dir
        self.batch_size, self.loudness_dbfs = batch_size, loudness_dbfs
        m = cfg.model
        bucket = round(bucket_seconds * m.sampling_rate)
        self.multiple = int(np.lcm(m.pad_multiple, bucket)) if bucket > 0 else m.pad_multiple
        self.config_hash = model_hash(cfg)
        graphdef, state = nnx.split(codec)
        self._state = state
        self._encode = jax.jit(lambda s, w: nnx.merge(graphdef, s).encode(w))
        self._decode = jax.jit(lambda s, c: nnx.merge(graphdef, s).decode(c))

    @classmethod
    def from_run(cls, run_dir: str | Path | None = None, *, step: int | str | None = None,
                 **kwargs) -> SnacTokenizer:
        """The model of a run directory (default: the newest under ``runs/``) at ``step``."""
        run_dir = find_run(run_dir)
        step = Checkpointer(run_dir, read_only=True).resolve_step(step)
        codec, d = load_model(run_dir, lambda d: SNAC(config_from_dict(SnacConfig, d).model,
                                                      rngs=nnx.Rngs(0)), step=step)
        cfg = config_from_dict(SnacConfig, d)
        kwargs.setdefault("loudness_dbfs", cfg.data.loudness_dbfs)
        log.info("SNAC from %s step %d (config %s)", run_dir, step, model_hash(cfg))
        return cls(codec, cfg, step=step, run_dir=run_dir, **kwargs)

    def _groups(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices with equal padded lengths, ``batch_size`` at a time."""
        by_len: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            by_len.setdefault(-(-n // self.multiple) * self.multiple, []).append(i)
        return [idx[j:j + self.batch_size] for _, idx in sorted(by_len.items())
                for j in range(0, len(idx), self.batch_size)]

    def _fill(self, rows: list) -> list:
        return rows + [rows[0]] * (self.batch_size - len(rows))

    def encode(self, wavs: Sequence[np.ndarray], *,
               progress: Callable[[int], None] | None = None) -> list[SnacTokenFile]:
        """Mono float waveforms ``[N_i]`` at the model's rate -> token files."""
        m = self.cfg.model
        prepared, gains = [], []
        for w in wavs:
            w = np.asarray(w, np.float32)
            if w.ndim != 1 or w.size == 0:
                raise ValueError(f"expected a non-empty mono waveform [N], got {w.shape}")
            w, g = normalize_with_gain(w, self.loudness_dbfs)
            prepared.append(w)
            gains.append(g)
        out: list[list[np.ndarray] | None] = [None] * len(wavs)
        for idx in self._groups([w.size for w in prepared]):
            n = -(-prepared[idx[0]].size // self.multiple) * self.multiple
            batch = np.stack([np.pad(w, (0, n - w.size)) for w in
                              self._fill([prepared[i] for i in idx])])[..., None]
            codes = [np.asarray(c) for c in self._encode(self._state, batch)]
            for j, i in enumerate(idx):
                keep = m.code_lengths(prepared[i].size)
                out[i] = [c[j, :k] for c, k in zip(codes, keep, strict=True)]
            if progress is not None:
                progress(len(idx))
        return [SnacTokenFile(codes=c, strides=m.vq_strides, codebook_size=m.codebook_size,
                              sample_rate=m.sampling_rate, num_samples=int(w.size),
                              config_hash=self.config_hash, step=self.step, gain_db=g)
                for c, w, g in zip(out, prepared, gains, strict=True)]

    def check(self, tokens: SnacTokenFile, name: str = "tokens") -> None:
        """Raise ``TokenFileError`` unless ``tokens`` fit this model."""
        m = self.cfg.model
        if tokens.config_hash != self.config_hash:
            raise TokenFileError(f"{name}: encoded by a SNAC with config {tokens.config_hash}, "
                                 f"this one ({self.run_dir}) has {self.config_hash}")
        if tuple(tokens.strides) != m.vq_strides:
            raise TokenFileError(f"{name}: strides {tokens.strides}, the model has "
                                 f"{m.vq_strides}")
        for lvl, c in enumerate(tokens.codes):
            if c.size and (c.min() < 0 or c.max() >= m.codebook_size):
                raise TokenFileError(f"{name}: level {lvl} has codes outside "
                                     f"[0, {m.codebook_size})")

    def decode(self, tokens: Sequence[SnacTokenFile], *, names: Sequence[str] | None = None,
               progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Token files -> mono float32 waveforms ``[num_samples]`` at their input level."""
        m = self.cfg.model
        for i, t in enumerate(tokens):
            self.check(t, names[i] if names else f"tokens[{i}]")
        out: list[np.ndarray | None] = [None] * len(tokens)
        for idx in self._groups([t.num_samples for t in tokens]):
            lengths = m.code_lengths(
                -(-tokens[idx[0]].num_samples // self.multiple) * self.multiple)
            batch = [np.stack([np.pad(t.codes[lvl], (0, lengths[lvl] - t.codes[lvl].size))
                               for t in self._fill([tokens[i] for i in idx])])
                     for lvl in range(len(lengths))]
            wav = np.asarray(self._decode(self._state, batch))[..., 0]
            for j, i in enumerate(idx):
                gain = np.float32(10 ** (-tokens[i].gain_db / 20))
                out[i] = (wav[j, :tokens[i].num_samples] * gain).astype(np.float32)
            if progress is not None:
                progress(len(idx))
        return out

