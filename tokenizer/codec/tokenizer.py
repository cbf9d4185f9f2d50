"""The tokenizer base every codec specialises: a trained codec loaded from its run
directory, batched encode of variable-length mono waveforms into token files and decode
back, and the check that a token file fits the codec.

``encode`` loudness-normalises each waveform (the level the codec trained at; the token
file records the gain), groups the waveforms into batches of ``batch_size`` (a short
last batch is filled with copies, so each padded shape compiles once), runs one jitted
model call per batch and cuts each waveform's codes back out. ``decode`` checks every
token file first, batches the same way, and returns each waveform at its input length
and level.

A codec subclass supplies what differs: its config type and model (``build_model``),
the config digest (``model_hash``), the model calls (``_model_encode`` /
``_model_decode``), how a batch is padded and cut (``_encode_rows`` / ``_decode_rows``,
batched by ``_encode_length`` / ``_decode_length``), its token file's layout fields
(``_token_fields``) and code streams (``_check_layout`` / ``_code_streams``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import jax
import numpy as np
from flax import nnx

from common.config import config_from_dict
from common.train.checkpoint import Checkpointer, load_model
from common.train.runs import pick_run
from tokenizer.codec.token_io import CodecTokenFile, TokenFileError, normalize_with_gain

log = logging.getLogger(__name__)

TF = TypeVar("TF", bound=CodecTokenFile)


class CodecTokenizer(abc.ABC, Generic[TF]):
    """Batched encode/decode of variable-length mono waveforms with one codec.

    Args:
      codec: the model (put in eval mode); cfg: its run config (a ``config_type``).
      step: the checkpoint step (recorded in token files).
      batch_size: waveforms per jitted call.
      loudness_dbfs: level to scale inputs to before encoding (the training data's; None:
        as given).
      run_dir: where the codec came from (named in error messages).
    """

    codec_name: ClassVar[str]  # for log messages
    run_kind: ClassVar[str]  # what run.json calls such runs: the package that trains them
    config_type: ClassVar[type]  # the run config, saved with every checkpoint
    token_file_type: ClassVar[type[CodecTokenFile]]

    def __init__(self, codec: nnx.Module, cfg: Any, *, step: int = 0, batch_size: int = 8,
                 loudness_dbfs: float | None = None, run_dir: str | Path | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        codec.eval()
        self.codec, self.cfg, self.step, self.run_dir = codec, cfg, step, run_dir
        self.batch_size, self.loudness_dbfs = batch_size, loudness_dbfs
        self.config_hash = self.model_hash(cfg)
        # Split once: the jitted calls take the state as an argument, so the weights are
        # not baked into the compiled code as constants.
        graphdef, state = nnx.split(codec)
        self._state = state
        self._encode = jax.jit(lambda s, *a: self._model_encode(nnx.merge(graphdef, s), *a))
        self._decode = jax.jit(lambda s, *a: self._model_decode(nnx.merge(graphdef, s), *a))

    @classmethod
    def from_run(cls, run_dir: str | Path | None = None, *,
                 step: int | str | None = None, command: str | None = None,
                 runs_root: str | Path = "runs", **kwargs):
        """The codec of a run directory (default: the newest run of this codec under
        ``runs_root``) at ``step`` (an int, ``"latest"`` or ``"best"``); the training
        data's loudness (``cfg.data.loudness_dbfs``) by default. A run of another kind
        (``run.json``) or no run at all fails naming it, and ``command`` (default: this
        method) as the one that needs a ``run_kind`` run. ``kwargs`` go to the
        constructor."""
        run_dir = pick_run(run_dir, cls.run_kind, command or f"{cls.__name__}.from_run",
                           runs_root)
        ckpt = Checkpointer(run_dir, read_only=True)
        step = ckpt.resolve_step(step)
        # A GAN run with gan.ema_decay saved EMA weights beside the trained ones: those
        # are the ones to use (they are what its evaluation measured).
        item = "ema" if ckpt.has_item("ema", step) else "model"
        ckpt.manager.close()
        codec, d = load_model(
            run_dir, lambda d: cls.build_model(config_from_dict(cls.config_type, d)),
            step=step, item=item)
        cfg = config_from_dict(cls.config_type, d)
        kwargs.setdefault("loudness_dbfs", cfg.data.loudness_dbfs)
        log.info("%s from %s step %d%s (config %s)", cls.codec_name, run_dir, step,
                 ", EMA weights" if item == "ema" else "", cls.model_hash(cfg))
        return cls(codec, cfg, step=step, run_dir=run_dir, **kwargs)

    # ------------------------------------------------------------------ codec hooks

    @classmethod
    @abc.abstractmethod
    def build_model(cls, cfg: Any) -> nnx.Module:
        """A freshly initialised model of ``cfg`` (checkpoint weights restore into it)."""

    @staticmethod
    @abc.abstractmethod
    def model_hash(cfg: Any) -> str:
        """Digest of the config fields the codes depend on."""

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """The rate waveforms are encoded and decoded at."""

    @staticmethod
    @abc.abstractmethod
    def _model_encode(model: nnx.Module, *arrays: jax.Array):
        """The jitted model call of one encode batch (what ``_encode_rows`` passes)."""

    @staticmethod
    @abc.abstractmethod
    def _model_decode(model: nnx.Module, *arrays: jax.Array):
        """The jitted model call of one decode batch (what ``_decode_rows`` passes)."""

    @abc.abstractmethod
    def _encode_length(self, wav: np.ndarray) -> int:
        """The length a waveform ``[N]`` is batched by."""

    @abc.abstractmethod
    def _decode_length(self, tokens: TF) -> int:
        """The length a token file is batched by."""

    @abc.abstractmethod
    def _encode_rows(self, rows: list[np.ndarray], **kw) -> list[Any]:
        """One batch: normalised waveforms ``[N_i]`` -> each one's codes."""

    @abc.abstractmethod
    def _decode_rows(self, rows: list[TF], **kw) -> list[np.ndarray]:
        """One batch: token files -> each one's waveform ``[>= num_samples]`` from its
        first sample, at the encoded level (the base cuts and undoes the gain)."""

    @abc.abstractmethod
    def _token_fields(self) -> dict[str, Any]:
        """The token file's layout fields (code stream names, codebook sizes, ...)."""

    @abc.abstractmethod
    def _check_layout(self, tokens: TF, name: str) -> None:
        """Raise ``TokenFileError`` unless the codes are laid out as this codec's."""

    @abc.abstractmethod
    def _code_streams(self, tokens: TF) -> list[tuple[str, np.ndarray, int]]:
        """``[(stream label, its codes, its codebook size)]`` of a token file."""

    # ------------------------------------------------------------------ batching

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped ``batch_size`` at a time, sorted by length (less padding)."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _fill(self, rows: list) -> list:
        """``rows`` filled up to ``batch_size`` with copies of the first."""
        return rows + [rows[0]] * (self.batch_size - len(rows))

    def _prepare(self, wav: np.ndarray) -> tuple[np.ndarray, float]:
        """Mono ``[N]`` -> (loudness-normalised ``[N]`` float32, gain dB)."""
        wav = np.asarray(wav, np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"expected a non-empty mono waveform [N], got shape {wav.shape}")
        return normalize_with_gain(wav, self.loudness_dbfs)

    # ------------------------------------------------------------------ encode / decode

    def encode(self, wavs: Sequence[np.ndarray], *,
               progress: Callable[[int], None] | None = None, **kw) -> list[TF]:
        """Mono waveforms ``[N_i]`` at ``sample_rate`` -> one token file each;
        ``progress(k)`` is called after each batch of k inputs, ``kw`` go to the codec's
        batch (alpha: ``stream``, ``chunk_frames``)."""
        prepared = [self._prepare(w) for w in wavs]
        lengths = [self._encode_length(w) for w, _ in prepared]
        out: list[Any] = [None] * len(prepared)
        for idx in self._batches(lengths):
            codes = self._encode_rows([prepared[i][0] for i in idx], **kw)
            for i, c in zip(idx, codes, strict=True):
                out[i] = c
            if progress is not None:
                progress(len(idx))
        fields = self._token_fields()
        return [self.token_file_type(codes=c, sample_rate=self.sample_rate,
                                     num_samples=int(w.size), config_hash=self.config_hash,
                                     step=self.step, gain_db=g, **fields)
                for c, (w, g) in zip(out, prepared, strict=True)]

    def check(self, tokens: TF, name: str = "tokens") -> None:
        """Raise ``TokenFileError`` unless ``tokens`` came from a codec like this one."""
        where = f" (checkpoint {self.run_dir})" if self.run_dir else ""
        if tokens.config_hash != self.config_hash:
            raise TokenFileError(
                f"{name}: encoded by a codec with config {tokens.config_hash}, but this "
                f"codec{where} has config {self.config_hash}; decode with the run that "
                "encoded it")
        self._check_layout(tokens, name)
        for label, codes, size in self._code_streams(tokens):
            lo, hi = codes.min(initial=0), codes.max(initial=0)
            if lo < 0 or hi >= size:
                raise TokenFileError(f"{name}: {label} has codes in [{lo}, {hi}], outside "
                                     f"its codebook of {size}")

    def decode(self, tokens: Sequence[TF], *, names: Sequence[str] | None = None,
               progress: Callable[[int], None] | None = None, **kw) -> list[np.ndarray]:
        """Token files -> mono float32 waveforms ``[num_samples]`` at their input level
        (each checked first; ``names`` name them in errors)."""
        for i, t in enumerate(tokens):
            self.check(t, names[i] if names else f"tokens[{i}]")
        lengths = [self._decode_length(t) for t in tokens]
        out: list[Any] = [None] * len(tokens)
        for idx in self._batches(lengths):
            segs = self._decode_rows([tokens[i] for i in idx], **kw)
            for seg, i in zip(segs, idx, strict=True):
                gain = np.float32(10 ** (-tokens[i].gain_db / 20))
                out[i] = (seg[:tokens[i].num_samples] * gain).astype(np.float32)
            if progress is not None:
                progress(len(idx))
        return out
