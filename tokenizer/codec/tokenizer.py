"""The tokenizer base every codec specialises: a trained codec loaded from its run
directory, batched encode of variable-length mono waveforms into token files and decode
back, and the check that a token file fits the codec.

``encode`` loudness-normalises each waveform (the level the codec trained at; the token
file records the gain), groups the waveforms into batches of ``batch_size`` (a short
last batch is filled with copies, so each padded shape compiles once), runs one jitted
model call per batch and cuts each waveform's codes back out. ``decode`` checks every
token file first, batches the same way, and returns each waveform at its input length
and level. Each batch shape is compiled ahead of time once (``_call``), and a call
whose arguments, outputs and temporaries (XLA's estimate) would not fit in the free
memory raises ``CodecMemoryError`` naming its inputs instead of taking the machine down.

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
from common.train.hardware import (
    available_memory_bytes,
    compiled_memory_bytes,
    format_bytes,
)
from common.train.runs import pick_run
from tokenizer.codec.token_io import CodecTokenFile, TokenFileError, normalize_with_gain

log = logging.getLogger(__name__)

TF = TypeVar("TF", bound=CodecTokenFile)
# A compiled call may take this share of the free memory (the rest: the compiler, Python).
MEMORY_MARGIN = 0.8


class CodecMemoryError(MemoryError):
    """One model call would need more memory than is free; the message names its inputs."""


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
        self._compiled: dict[Any, Any] = {}

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
    def _encode_rows(self, rows: list[np.ndarray], *, names: Sequence[str] = (),
                     **kw) -> list[Any]:
        """One batch: normalised waveforms ``[N_i]`` -> each one's codes."""

    @abc.abstractmethod
    def _decode_rows(self, rows: list[TF], *, names: Sequence[str] = (),
                     **kw) -> list[np.ndarray]:
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

    # ------------------------------------------------------------------ model calls

    def _compile(self, fn, *args) -> tuple[Any, int | None]:
        """``(executable, bytes it needs)`` of ``fn(state, *args)`` for these shapes
        (compiled once per shape and kept)."""
        leaves, tree = jax.tree.flatten(args)
        key = (fn is self._decode, tree,
               tuple((np.shape(a), np.result_type(a).str) for a in leaves))
        if key not in self._compiled:
            exe = fn.lower(self._state, *args).compile()
            self._compiled[key] = (exe, compiled_memory_bytes(exe))
        return self._compiled[key]

    def memory_needed(self, fn, *args) -> tuple[int | None, int | None]:
        """``(bytes the call needs, bytes free)``, None where unknown."""
        return self._compile(fn, *args)[1], available_memory_bytes()

    def _call(self, fn, *args, names: Sequence[str] = ()):
        """``fn(state, *args)`` (``self._encode`` or ``self._decode``), after checking that
        it fits in memory; ``names`` name the batch's inputs in the error."""
        exe, need = self._compile(fn, *args)
        free = available_memory_bytes()
        if need is not None and free is not None and need > MEMORY_MARGIN * free:
            what = ", ".join(names) if names else "this batch"
            raise CodecMemoryError(
                f"{what}: one {self.codec_name} call of shape "
                f"{[np.shape(a) for a in jax.tree.leaves(args)]} needs about "
                f"{format_bytes(need)} and {format_bytes(free)} is free; use a smaller "
                "--batch-size / --max-batch-seconds, or split long files")
        return exe(self._state, *args)

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

    def _run_batches(self, lengths: Sequence[int], rows: Callable[..., list],
                     names: Sequence[str] | None,
                     on_too_big: Callable[[int, CodecMemoryError], None] | None,
                     progress: Callable[[int], None] | None) -> list:
        """``rows(indices, names=...)`` over ``_batches(lengths)``: one output per input.
        A batch that does not fit in memory is retried one input at a time; an input
        that alone does not fit raises ``CodecMemoryError``, or with ``on_too_big`` is
        reported to it and left None."""
        out: list[Any] = [None] * len(lengths)

        def run(idx):
            try:
                for i, r in zip(idx, rows(idx, names=[names[i] for i in idx] if names
                                          else ()), strict=True):
                    out[i] = r
            except CodecMemoryError as e:
                if len(idx) > 1:
                    for i in idx:
                        run([i])
                elif on_too_big is None:
                    raise
                else:
                    on_too_big(idx[0], e)

        for idx in self._batches(lengths):
            run(idx)
            if progress is not None:
                progress(len(idx))
        return out

    def encode(self, wavs: Sequence[np.ndarray], *, names: Sequence[str] | None = None,
               progress: Callable[[int], None] | None = None,
               on_too_big: Callable[[int, CodecMemoryError], None] | None = None,
               **kw) -> list[TF | None]:
        """Mono waveforms ``[N_i]`` at ``sample_rate`` -> one token file each;
        ``progress(k)`` is called after each batch of k inputs, ``kw`` go to the codec's
        batch (alpha: ``stream``, ``chunk_frames``); ``names`` name the inputs in errors.
        An input too long to encode in the free memory raises ``CodecMemoryError``, or
        is handed to ``on_too_big(index, error)`` and gets None."""
        prepared = [self._prepare(w) for w in wavs]
        lengths = [self._encode_length(w) for w, _ in prepared]
        out = self._run_batches(
            lengths, lambda idx, **k: self._encode_rows([prepared[i][0] for i in idx],
                                                        **k, **kw),
            names, on_too_big, progress)
        fields = self._token_fields()
        return [None if c is None else
                self.token_file_type(codes=c, sample_rate=self.sample_rate,
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
               progress: Callable[[int], None] | None = None,
               on_too_big: Callable[[int, CodecMemoryError], None] | None = None,
               **kw) -> list[np.ndarray | None]:
        """Token files -> mono float32 waveforms ``[num_samples]`` at their input level
        (each checked first; ``names`` name them in errors). Too long for the free
        memory: as ``encode``."""
        for i, t in enumerate(tokens):
            self.check(t, names[i] if names else f"tokens[{i}]")
        lengths = [self._decode_length(t) for t in tokens]

        def rows(idx, **k):
            segs = self._decode_rows([tokens[i] for i in idx], **k, **kw)
            return [(seg[:tokens[i].num_samples]
                     * np.float32(10 ** (-tokens[i].gain_db / 20))).astype(np.float32)
                    for seg, i in zip(segs, idx, strict=True)]

        return self._run_batches(lengths, rows, names, on_too_big, progress)
