"""``PipelineConfig``: how a speech source becomes batches (``common.data.pipeline``).

Its own module so that configs (a model's data config, the CLIs) import it without
grain and the decoding machinery.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from common.data.bad_input import BadInputConfig
from common.data.batching import hop_multiple, round_up
from common.data.extractors import F0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """How a source becomes batches.

    Attributes:
      sample_rate: audio is resampled to this rate.
      batch_size: GLOBAL batch size (a multiple of the process count).
      segment_seconds: crop every utterance to this length (segment mode); None for
        whole utterances (bucketed).
      max_seconds: whole-utterance mode: the longest batch length.
      long_utterances: longer than ``max_seconds``: "crop" (a random window of
        ``max_seconds``; its token rows are left empty, since the transcript no longer
        matches the audio) or "skip" (counted as ``too_long``).
      bucket_seconds: batch lengths in whole-utterance mode (``max_seconds`` is the last).
      bucket_window: batches per window sorted by duration (larger: less padding, less
        randomness in which utterances share a batch).
      frame_hops: a ``valid_<hop>`` mask per hop; N is a multiple of all of them.
      loudness_dbfs: RMS target in dBFS (None: leave levels alone).
      peak_dbfs: loudness normalisation never raises a peak above this.
      gain_db: (low, high) random gain in dB added to the target when training.
      phoneme_vocab: the path of a saved ``Vocab`` to tokenise the ``phonemes`` field;
        None: no tokens. A ``Vocab`` object also works in code (typed ``str`` because the
        CLI and the saved config need a path).
      text_vocab: the same for the ``text`` field.
      pad_multiple: token length L is the batch's longest sequence rounded up to this.
      max_tokens: fixed L instead (static shapes; required with several processes).
      long_tokens: more than ``max_tokens``: "error" (naming the utterance), "truncate",
        "skip" (the utterance, counted as ``long_transcript``: a cut transcript would
        be a wrong CTC target), or "mask" (keep the audio, leave its token rows empty,
        noted as ``long_transcript``).
      phonemize: records with an empty ``phonemes`` field get their ``text`` phonemized
        (espeak-ng, ``common.data.phonemize``); one that yields none is skipped as
        ``no_phonemes``.
      language: the espeak language for that ("en-us", "de", ...); empty: each record's
        own ``language``, else "en-us".
      token_bos_eos: frame token sequences with <bos> ... <eos>.
      speakers: speaker ids; ``speaker`` is the index in this table.
      f0: also give ``f0`` float32 ``[B, T]`` (Hz, 0 unvoiced) and ``voiced`` bool
        ``[B, T]`` per frame of ``f0.hop_length`` (``T = 1 + N // hop``, centred, the
        frames of a log-mel at that hop), estimated by this extractor
        (``common.data.extractors.F0``) on the batch's left-padded audio.
      precomputed: record fields computed in advance (``python -m common.data.preprocess``
        shards read through ``common.data.shards.ShardSource``), one array per utterance
        (a speaker embedding ``[D]``): stacked into ``[B, D]`` (zeros for padding rows).
      precomputed_frames: record fields with one row per frame of ``precomputed_hop``
        samples (content features ``[t, D]``), ``t = L // hop`` for the utterance's
        ``L`` samples: left-padded into ``[B, N // hop + 1, D]``, each row's frames the
        ones centred on its valid samples (frame ``j`` centred on sample ``j * hop``, as
        the front ends' frame masks have it: the last frame, centred on sample N, stays
        empty). Such frames describe the whole utterance, so an
        utterance cropped to its bucket is skipped (counted as ``cropped``); a frame
        count that does not fit the audio is a ``DataError`` naming the record.
      precomputed_hop: the frame hop of ``precomputed_frames`` (one of ``frame_hops``).
      seed: plan shuffles, crops and gains derive from it.
      num_epochs: None: forever (reshuffled each epoch).
      shuffle: shuffle indices and batches each epoch.
      drop_remainder: training drops each epoch's last partial batch.
      worker_count: grain worker processes (0: decode in this process).
      read_threads: decode threads per process (0: synchronous).
      prefetch_buffer: batches buffered per process.
      bad_input: skip or fail on broken files.
      process_index: this host's index among the data-loading processes (None: from jax).
      process_count: how many processes share the data (None: from jax).
    """

    sample_rate: int = 16000
    batch_size: int = 8
    segment_seconds: float | None = None
    max_seconds: float = 10.0
    long_utterances: Literal["crop", "skip"] = "crop"
    bucket_seconds: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0)
    bucket_window: int = 32
    frame_hops: tuple[int, ...] = (320,)
    loudness_dbfs: float | None = -20.0
    peak_dbfs: float = -1.0
    gain_db: tuple[float, float] | None = None
    phoneme_vocab: str | None = None
    text_vocab: str | None = None
    pad_multiple: int = 16
    max_tokens: int | None = None
    long_tokens: Literal["error", "truncate", "skip", "mask"] = "error"
    token_bos_eos: bool = False
    phonemize: bool = False
    language: str = ""
    speakers: tuple[str, ...] | None = None
    f0: F0 | None = None
    precomputed: tuple[str, ...] = ()
    precomputed_frames: tuple[str, ...] = ()
    precomputed_hop: int | None = None
    seed: int = 0
    num_epochs: int | None = None
    shuffle: bool = True
    drop_remainder: bool = True
    worker_count: int = 0
    read_threads: int = 2
    prefetch_buffer: int = 2
    bad_input: BadInputConfig = dataclasses.field(default_factory=BadInputConfig)
    process_index: int | None = None
    process_count: int | None = None

    def __post_init__(self):
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"PipelineConfig.{msg}")

        need(self.sample_rate > 0, f"sample_rate must be > 0, got {self.sample_rate}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.segment_seconds is None or self.segment_seconds > 0,
             f"segment_seconds must be > 0 or None, got {self.segment_seconds}")
        need(self.max_seconds > 0, f"max_seconds must be > 0, got {self.max_seconds}")
        need(self.long_utterances in ("crop", "skip"),
             f"long_utterances must be 'crop' or 'skip', got {self.long_utterances!r}")
        need(list(self.bucket_seconds) == sorted(self.bucket_seconds)
             and all(0 < b <= self.max_seconds for b in self.bucket_seconds),
             f"bucket_seconds must be increasing, in (0, max_seconds={self.max_seconds}], "
             f"got {self.bucket_seconds}")
        need(self.bucket_window >= 1, f"bucket_window must be >= 1, got {self.bucket_window}")
        need(all(int(h) == h and h >= 1 for h in self.frame_hops),
             f"frame_hops must be positive integers, got {self.frame_hops}")
        need(self.gain_db is None or (len(self.gain_db) == 2
                                      and self.gain_db[0] <= self.gain_db[1]),
             f"gain_db must be (low, high) with low <= high, got {self.gain_db}")
        need(self.pad_multiple >= 1, f"pad_multiple must be >= 1, got {self.pad_multiple}")
        need(self.max_tokens is None or self.max_tokens >= 1,
             f"max_tokens must be >= 1 or None, got {self.max_tokens}")
        need(self.long_tokens in ("error", "truncate", "skip", "mask"),
             "long_tokens must be 'error', 'truncate', 'skip' or 'mask', got "
             f"{self.long_tokens!r}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(self.f0 is None or self.f0.sample_rate == self.sample_rate,
             f"f0.sample_rate must be sample_rate={self.sample_rate}, got "
             f"{self.f0 and self.f0.sample_rate}")
        need(not self.precomputed_frames or (self.precomputed_hop in self.frame_hops
                                             and self.segment_seconds is None),
             f"precomputed_frames need whole utterances (segment_seconds=None) and a "
             f"precomputed_hop among frame_hops={self.frame_hops}, got "
             f"{self.precomputed_hop}")
        need(not set(self.precomputed) & set(self.precomputed_frames),
             f"precomputed and precomputed_frames share fields: "
             f"{sorted(set(self.precomputed) & set(self.precomputed_frames))}")
        need(self.num_epochs is None or self.num_epochs >= 1,
             f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        need(min(self.worker_count, self.read_threads, self.prefetch_buffer) >= 0,
             "worker_count, read_threads and prefetch_buffer must be >= 0")
        need(not (self.segment_seconds is not None and self.tokenized),
             "segment_seconds with phoneme_vocab/text_vocab: transcripts do not align with "
             "random crops; use whole-utterance mode (segment_seconds=None) for tokens")

    @property
    def tokenized(self) -> bool:
        return self.phoneme_vocab is not None or self.text_vocab is not None

    @property
    def hop_multiple(self) -> int:
        return hop_multiple(self.frame_hops)

    def seconds_to_length(self, seconds: float) -> int:
        """Samples for ``seconds``, rounded up to a multiple of every hop."""
        return round_up(max(1, round(seconds * self.sample_rate)), self.hop_multiple)
