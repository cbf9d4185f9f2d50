"""grain pipelines from a speech source to training batches.

``make_pipeline(source, cfg)`` turns any random-access source of utterance records
(``common.data.records``; a list works) into an iterator of host batches::

    BatchPlan (index lists, common.data.batching)          grain.MapDataset.source
      -> decode, mono, resample, loudness, crop, tokenise, left-pad   .map (in workers)
      -> to_iter_dataset(ReadOptions) -> mp_prefetch(worker_count)
      -> PipelineIterator (main process: skip counts, state)

Batch (a dict of numpy arrays, leading axis this process's share of the global batch;
``B = batch_size // process_count``):

  audio            float32 [B, N, 1]  left-padded with zeros
  audio_valid      bool    [B, N]
  audio_lengths    int32   [B]        valid samples per row
  valid_<hop>      bool    [B, N // hop] for each hop in ``frame_hops`` (last frames valid)
  phonemes, text   int32   [B, L]     left-padded with 0, when a vocabulary is given
  phonemes_valid, text_valid  bool [B, L]  all False for a row whose transcript is not
                                      complete in its audio (cropped): CTC leaves it out
  speaker          int32   [B]        index into ``speakers``, when given
  f0, voiced       float32, bool [B, 1 + N // hop]  with ``f0`` (``PipelineConfig.f0``)
  <precomputed>    [B, D...]          per-utterance fields read from the records
  <frames field>   [B, N // hop + 1, D...]  per-frame fields read from the records
                                      (``precomputed_frames``, left-padded)
  example_valid    bool    [B]        False for rows that pad the batch or were skipped

Two modes. Segment (``segment_seconds``): every utterance is cropped to a fixed ``N``
(shorter ones padded), batches of shuffled indices; for codecs. Whole utterances
(``segment_seconds=None``): up to ``max_seconds``, batched by similar duration with
``N`` padded up to a bucket boundary; for CTC and TTS, with tokenised transcripts.
Longer utterances are cropped to a random window of ``max_seconds`` (as DAC and EnCodec
train) or skipped (``long_utterances``); a cropped utterance keeps its audio but not its
transcript, which no longer matches it: its token rows are empty.

Phonemes: with ``phonemize``, a record without phonemes gets its transcript phonemized
by espeak-ng in its language (``common.data.phonemize``: the corpus's engine and symbols),
in the workers, cached per text.

What each rule kept and skipped is logged per epoch (``common.data.pipeline_report``),
and a pipeline that keeps nothing stops with an ``EmptyPipelineError`` naming why.

Determinism: the plan depends on (seed, epoch), crop positions and random gains on
(seed, epoch, source index), and the pipeline maps one plan entry to one batch (a bad
file becomes a padding row, never a missing batch: every process must step through the
same global batches). So the iterator state is just a position; a restored iterator
continues exactly, with any worker count.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
import soundfile as sf

from common.data import grain_utils
from common.data.bad_input import (
    BadInputError,
    Skipped,
    SkipStats,
    decode_record,
)
from common.data.batching import (
    PAD_INDEX,
    BatchPlan,
    collate_audio,
    left_pad_tokens,
    round_up,
)
from common.data.phonemize import record_phonemes
from common.data.pipeline_config import PipelineConfig
from common.data.pipeline_report import EmptyPipelineError, PipelineReport, plan_summary
from common.data.records import DataError
from common.data.transforms import (
    SALT_CROP,
    SALT_GAIN,
    example_rng,
    load_vocab,
    normalize_loudness,
    random_crop,
    tokenize,
)
from common.data.vocab import Vocab

log = logging.getLogger(__name__)

STATS_KEY = "_skip_counts"  # reserved: skip counts travelling from workers to the main process
# A crop this short (metadata durations a little under the file's) cuts no phoneme.
CROP_TOLERANCE_SECONDS = 0.02


# ---------------------------------------------------------------------------------------
# Durations for the plan


def _probe_seconds(rec: Mapping[str, Any]) -> float:
    blob = rec.get("audio_bytes")
    try:
        return float(sf.info(io.BytesIO(blob) if blob else str(rec["audio_path"])).duration)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError):
        return 0.0  # unreadable: decoding will skip (and count) it


def source_durations(source: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """float64 ``[len(source)]`` seconds: ``source.durations`` or each record's ``duration``;
    unknown ones (< 0) are probed with ``soundfile.info`` (0 when unreadable)."""
    durs = getattr(source, "durations", None)
    if durs is not None:
        out = np.asarray(durs, np.float64).copy()
        if out.shape != (len(source),):
            raise DataError(f"{type(source).__name__}.durations has shape {out.shape}, "
                            f"expected ({len(source)},)")
    else:
        out = np.asarray([float(source[i].get("duration", -1.0)) for i in range(len(source))],
                         np.float64)
    unknown = np.flatnonzero(~(out >= 0))
    if len(unknown):
        log.info("probing the duration of %d of %d files", len(unknown), len(out))
        for i in unknown:
            out[i] = _probe_seconds(source[int(i)])
    return out


# ---------------------------------------------------------------------------------------
# One plan entry -> one batch (runs in grain workers)


class _Collate:
    """Decode, normalise, crop, tokenise and left-pad the utterances of one plan entry."""

    def __init__(self, source: Any, cfg: PipelineConfig, *, train: bool,
                 phoneme_vocab: Vocab | None, text_vocab: Vocab | None):
        self.source, self.cfg, self.train = source, cfg, train
        self.vocabs = {k: v for k, v in (("phonemes", phoneme_vocab), ("text", text_vocab))
                       if v is not None}
        self.speakers = (None if cfg.speakers is None
                         else {s: i for i, s in enumerate(cfg.speakers)})
        self.max_len = cfg.seconds_to_length(cfg.max_seconds)
        self.crop_tolerance = round(CROP_TOLERANCE_SECONDS * cfg.sample_rate)
        self.shapes = precomputed_shapes(source, cfg.precomputed, cfg.precomputed_frames)

    def _audio(self, rec: dict, n: int, epoch: int, index: int, stats: SkipStats
               ) -> tuple[np.ndarray | None, bool]:
        """``(wav [<= n] or None when skipped, whether it is the whole utterance)``."""
        cfg = self.cfg
        wav = rec["audio"]
        if cfg.segment_seconds is None and wav.shape[0] > self.max_len:
            if cfg.long_utterances == "skip":
                stats.skip(Skipped(str(rec["audio_path"]), "too_long",
                                   f"{wav.shape[0] / cfg.sample_rate:.1f} s > "
                                   f"max_seconds {cfg.max_seconds}"))
                return None, False
        if cfg.loudness_dbfs is not None:
            gain = 0.0
            if self.train and cfg.gain_db is not None:
                gain = float(example_rng(cfg.seed, epoch, index, SALT_GAIN).uniform(*cfg.gain_db))
            wav = normalize_loudness(wav, cfg.loudness_dbfs, cfg.peak_dbfs, gain)
        whole = True
        if wav.shape[0] > n:
            if cfg.segment_seconds is None and wav.shape[0] <= self.max_len:
                stats.note("cropped_to_bucket")  # its metadata duration was too short
            # A few samples over (metadata rounding) cut no phoneme: still whole.
            whole = wav.shape[0] - n <= self.crop_tolerance
            wav = random_crop(wav, n, example_rng(cfg.seed, epoch, index, SALT_CROP))
        return wav, whole

    def _tokens(self, rec: dict, field: str, whole: bool, stats: SkipStats
                ) -> np.ndarray | None:
        """int32 ``[L]`` ids (``[0]``: kept without a CTC target), or None: skipped."""
        cfg, path = self.cfg, str(rec["audio_path"])
        phonemize = field == "phonemes" and cfg.phonemize
        if not (rec[field] or (phonemize and rec["text"])):
            self._bad(path, "no_transcript", f"empty {field!r} field", stats)
            return None
        if not whole:  # cropped: the transcript is not what the audio says
            return np.zeros((0,), np.int32)
        text = rec[field]
        if phonemize and not text:
            text, why = record_phonemes(rec, cfg.language)
            if not text:
                self._bad(path, "no_phonemes", why, stats)
                return None
        skip = cfg.long_tokens in ("skip", "mask")
        ids = tokenize(text, self.vocabs[field], max_len=None if skip else cfg.max_tokens,
                       on_long="error" if skip else cfg.long_tokens,
                       bos_eos=cfg.token_bos_eos, where=str(rec["id"]))
        if skip and cfg.max_tokens is not None and ids.shape[0] > cfg.max_tokens:
            detail = f"{ids.shape[0]} {field} tokens > max_tokens {cfg.max_tokens}"
            if cfg.long_tokens == "mask":
                stats.note("long_transcript", path)
                return np.zeros((0,), np.int32)
            stats.skip(Skipped(path, "long_transcript", detail))
            return None
        return ids

    def _bad(self, path: str, reason: str, detail: str, stats: SkipStats) -> None:
        if self.cfg.bad_input.mode == "strict":
            raise BadInputError(path, reason, detail)
        stats.skip(Skipped(path, reason, detail))

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        cfg, epoch, n = self.cfg, int(item["epoch"]), int(item["length"])
        stats = SkipStats()
        kept: collections.Counter[str] = collections.Counter()
        rows: list[tuple[np.ndarray, dict[str, np.ndarray], int] | None] = []
        for index in map(int, item["indices"]):
            if index == PAD_INDEX:
                rows.append(None)
                continue
            rec = decode_record(self.source[index], cfg.sample_rate, cfg.bad_input, stats)
            if isinstance(rec, Skipped):
                rows.append(None)
                continue
            source_seconds = rec["audio"].shape[0] / cfg.sample_rate
            wav, whole = self._audio(rec, n, epoch, index, stats)
            toks: dict[str, np.ndarray] = {}
            for field in self.vocabs:
                ids = None if wav is None else self._tokens(rec, field, whole, stats)
                if ids is None:  # skipped (and counted) once, whatever else is wrong
                    wav = None
                    break
                toks[field] = ids
            pre: dict[str, np.ndarray] | None = {}
            if wav is not None and self.shapes:
                pre = self._precomputed(rec, wav, stats)
                wav = None if pre is None else wav
            if wav is None:
                rows.append(None)
                continue
            seconds = wav.shape[0] / cfg.sample_rate
            if whole:
                kept["whole"] += 1
                kept["whole_seconds"] += seconds
            else:
                kept["cropped"] += 1
                kept["cropped_seconds"] += seconds
                kept["cropped_source_seconds"] += source_seconds
            kept["tokens"] += int(bool(toks) and all(len(t) for t in toks.values()))
            rows.append((wav, toks, self._speaker(rec), pre))
        batch = collate_audio([r and r[0] for r in rows], n, cfg.frame_hops)
        for key in cfg.precomputed:
            batch[key] = self._stack(key, [r and r[3][key] for r in rows])
        for key in cfg.precomputed_frames:
            batch[key] = self._frames(key, [r and r[3][key] for r in rows], n)
        for field in self.vocabs:
            seqs = [r and r[1][field] for r in rows]
            longest = max((len(s) for s in seqs if s is not None), default=0)
            length = cfg.max_tokens or round_up(max(longest, 1), cfg.pad_multiple)
            batch[field], batch[f"{field}_valid"] = left_pad_tokens(seqs, length)
        if self.speakers is not None:
            batch["speaker"] = np.asarray([r[2] if r else 0 for r in rows], np.int32)
        batch["example_valid"] = np.asarray([r is not None for r in rows], bool)
        if cfg.f0 is not None:
            batch["f0"], batch["voiced"] = self._f0(batch["audio"], batch["example_valid"])
        batch[STATS_KEY] = {"skipped": dict(stats.skipped), "notes": dict(stats.notes),
                            "kept": dict(kept)}
        return batch

    def _f0(self, audio: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F0 and voicing ``[B, 1 + N // hop]`` of the left-padded rows (zeros for the
        padding rows): computed on the padded row, so its frames are the mel's."""
        ext = self.cfg.f0
        wav = audio[..., 0] if audio.ndim == 3 else audio
        frames = 1 + wav.shape[1] // ext.hop_length
        f0 = np.zeros((wav.shape[0], frames), np.float32)
        voiced = np.zeros((wav.shape[0], frames), bool)
        for i in np.flatnonzero(valid):
            got = ext({"id": i, "audio": wav[i], "sample_rate": ext.sample_rate})
            f0[i], voiced[i] = got["f0"], got["voiced"]
        return f0, voiced

    def _precomputed(self, rec: dict, wav: np.ndarray, stats: SkipStats
                     ) -> dict[str, np.ndarray] | None:
        """The record's precomputed fields, checked; None: skipped (and counted)."""
        cfg, out = self.cfg, {}
        for key, (shape, _) in self.shapes.items():
            if key not in rec:
                raise DataError(f"{rec['id']}: no precomputed field {key!r} (the record has "
                                f"{sorted(rec)}); preprocess the source with the extractor "
                                f"that writes it")
            x = np.asarray(rec[key])
            frames = key in cfg.precomputed_frames
            if x.shape[frames:] != shape:
                raise DataError(f"{rec['id']}: precomputed field {key!r} has shape "
                                f"{x.shape}, expected {'[frames] + ' if frames else ''}"
                                f"{list(shape)}")
            out[key] = x
        if cfg.precomputed_frames:
            n = wav.shape[0]
            if n != rec["audio"].shape[0]:
                stats.skip(Skipped(str(rec["audio_path"]), "cropped",
                                   "precomputed frames cover the whole utterance, which is "
                                   "longer than its bucket"))
                return None
            want = n // cfg.precomputed_hop  # frames centred on its samples
            for key in cfg.precomputed_frames:
                if out[key].shape[0] != want:
                    raise DataError(
                        f"{rec['id']}: precomputed field {key!r} has {out[key].shape[0]} "
                        f"frames, but its {n} samples make {want} of {cfg.precomputed_hop} "
                        "(were the shards made from other audio, or another hop?)")
        return out

    def _stack(self, key: str, xs: list[np.ndarray | None]) -> np.ndarray:
        shape, dtype = self.shapes[key]
        out = np.zeros((len(xs), *shape), dtype)
        for i, x in enumerate(xs):
            if x is not None:
                out[i] = x
        return out

    def _frames(self, key: str, xs: list[np.ndarray | None], n: int) -> np.ndarray:
        shape, dtype = self.shapes[key]
        last = n // self.cfg.precomputed_hop  # the frame centred on sample n: never valid
        out = np.zeros((len(xs), last + 1, *shape), dtype)
        for i, x in enumerate(xs):
            if x is not None:
                out[i, last - x.shape[0]:last] = x
        return out

    def _speaker(self, rec: dict) -> int:
        if self.speakers is None:
            return 0
        try:
            return self.speakers[rec["speaker"]]
        except KeyError:
            raise DataError(f"{rec['id']}: speaker {rec['speaker']!r} is not in the speaker "
                            f"table ({len(self.speakers)} speakers)") from None


def precomputed_shapes(source: Any, per_utterance: Sequence[str], frames: Sequence[str]
                       ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape without the frames axis, dtype)}`` of precomputed record fields:
    from the shards' feature spec (``ShardSource.features``; ``None`` marks the frames
    axis) or else the source's first record."""
    if not per_utterance and not frames:
        return {}
    spec = getattr(source, "features", None)
    first = None if isinstance(spec, Mapping) else source[0]
    out = {}
    for key in (*per_utterance, *frames):
        if isinstance(spec, Mapping):
            if key not in spec:
                raise DataError(f"{source!r}: no precomputed field {key!r} (its fields: "
                                f"{sorted(spec)}); preprocess with the extractor that writes it")
            shape = tuple(d for d in spec[key]["shape"] if d is not None)
            out[key] = (shape, np.dtype(spec[key]["dtype"]))
        else:
            if key not in first:
                raise DataError(f"{source!r}: its records have no precomputed field {key!r}")
            x = np.asarray(first[key])
            out[key] = (x.shape[1:] if key in frames else x.shape, x.dtype)
    return out


# ---------------------------------------------------------------------------------------
# The main-process iterator


class PipelineIterator(grain_utils.PositionIterator):
    """Host batches from a grain iterator, with skip counts and a JSON state.

    ``get_state()`` is ``{"position": batches delivered, "plan": fingerprint, "skipped",
    "notes", "kept"}``; ``set_state`` rebuilds the grain iterator at that position (the
    plan maps positions to batches, so the state is the same for any worker count and for
    every process). ``stats`` accumulates the skip counts of all workers, ``report`` what
    each rule kept (``common.data.pipeline_report``: logged per epoch; it raises
    ``EmptyPipelineError`` when nothing is kept).
    """

    fingerprint_key = "plan"
    what = "pipeline iterator"
    fingerprint_of = "batch plan"
    _mismatch_hint = "the source, seed, batch size or bucketing changed since it was saved"

    def __init__(self, build: Callable[[int], Any], plan: BatchPlan, stats: SkipStats,
                 report: PipelineReport | None = None, *, look_ahead: bool = False):
        self.plan, self.stats = plan, stats
        self.report = report or PipelineReport("pipeline", tokenized=False,
                                               batches_per_epoch=plan.batches_per_epoch,
                                               batch_size=plan.local_batch)
        self.report.load_skipped = dict(stats.skipped)
        self._ahead: collections.deque[dict[str, Any]] = collections.deque()
        super().__init__(build, plan.fingerprint)
        if look_ahead:
            self._look_ahead()

    def _look_ahead(self) -> None:
        """Read batches now until one holds an utterance: a source whose files are all
        broken then fails here, before a training step sees an empty batch. The batches
        read are delivered first, in order (the state is the same)."""
        for _ in range(self.report.early):
            batch = next(self._it, None)
            if batch is None:
                break
            self._ahead.append(batch)
            if batch["example_valid"].any():
                return
        while self._ahead:  # all empty: counting them raises EmptyPipelineError
            next(self)

    def __next__(self) -> dict[str, Any]:
        if not self._ahead:
            return super().__next__()
        self._position += 1
        return self._on_batch(self._ahead.popleft())

    def close(self) -> None:
        self._ahead.clear()
        super().close()

    def _on_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts = batch.pop(STATS_KEY)
        with self.stats._lock:
            self.stats.skipped.update(counts["skipped"])
            self.stats.notes.update(counts["notes"])
        self.report.add(self._position, counts["kept"], counts["skipped"])
        return batch

    def _extra_state(self) -> dict[str, Any]:
        return {"skipped": dict(self.stats.skipped), "notes": dict(self.stats.notes),
                "kept": dict(self.report.kept)}

    def _restore_extra(self, state: Mapping[str, Any]) -> None:
        with self.stats._lock:
            self.stats.skipped.clear()
            self.stats.skipped.update(state.get("skipped", {}))
            self.stats.notes.clear()
            self.stats.notes.update(state.get("notes", {}))
        self.report.restart(self._position, state.get("kept", {}))


def make_pipeline(source: Sequence[Mapping[str, Any]], cfg: PipelineConfig, *,
                  train: bool = True, name: str | None = None) -> PipelineIterator:
    """An iterator of host batches (see the module doc) over ``source``.

    ``train=False`` reads one epoch in order, with the last batch padded
    (``example_valid`` False), and no random gain: every utterance exactly once.
    ``.stats`` starts from the source's ``load_stats`` when it has one (RecordSource).
    ``name`` names it in logs and errors (default "train data (<source name>)", or
    "eval data (...)"). Raises ``EmptyPipelineError`` when no utterance can make a batch.
    """
    if not train:
        cfg = dataclasses.replace(cfg, num_epochs=1, shuffle=False, drop_remainder=False)
    if name is None:
        name = (f"{'train' if train else 'eval'} data"
                + (f" ({source.name})" if isinstance(getattr(source, "name", None), str)
                   else ""))
    p_index, p_count = grain_utils.process_shard(cfg.process_index, cfg.process_count)
    grain_utils.local_batch_size(cfg.batch_size, p_count)
    if cfg.tokenized and cfg.max_tokens is None and p_count > 1:
        raise ValueError("PipelineConfig.max_tokens must be set with several processes: each "
                         "pads tokens to its own longest sequence, so shapes would differ")
    stats = SkipStats()
    loaded = getattr(source, "load_stats", None)  # e.g. RecordSource: files dropped at load
    if isinstance(loaded, SkipStats):
        stats.skipped.update(loaded.skipped)
        stats.notes.update(loaded.notes)
    plan_args: dict[str, Any] = dict(
        process_index=p_index, process_count=p_count, seed=cfg.seed, shuffle=cfg.shuffle,
        num_epochs=cfg.num_epochs, drop_remainder=cfg.drop_remainder)
    keep = np.ones(len(source), bool)
    if cfg.segment_seconds is not None:
        plan_args["length"] = cfg.seconds_to_length(cfg.segment_seconds)
    else:
        durations = source_durations(source)
        if cfg.long_utterances == "skip":
            keep = durations <= cfg.max_seconds
            if (~keep).any():
                stats.skipped["too_long"] += int((~keep).sum())
        # Once per training run; an eval pipeline is rebuilt at every evaluation.
        log.log(logging.INFO if train else logging.DEBUG, "%s",
                plan_summary(name, durations, keep, cfg.max_seconds, cfg.long_utterances,
                             tokenized=cfg.tokenized))
        bounds = sorted({cfg.seconds_to_length(b) for b in cfg.bucket_seconds}
                        | {cfg.seconds_to_length(cfg.max_seconds)})
        plan_args.update(durations=np.minimum(durations[keep], cfg.max_seconds),
                         boundaries=bounds, sample_rate=cfg.sample_rate,
                         window_batches=cfg.bucket_window)
    try:
        plan = BatchPlan(np.flatnonzero(keep), cfg.batch_size, **plan_args)
    except ValueError as e:  # no full batch: say what removed the utterances
        raise EmptyPipelineError(
            f"{name}: {int(keep.sum())} of {len(source)} utterances are usable, which makes "
            f"no batch ({e}); removed: {stats.summary()}") from e
    collate = _Collate(source, cfg, train=train,
                       phoneme_vocab=load_vocab(cfg.phoneme_vocab),
                       text_vocab=load_vocab(cfg.text_vocab))
    read = grain.ReadOptions(num_threads=cfg.read_threads,
                             prefetch_buffer_size=cfg.prefetch_buffer)
    if cfg.worker_count > 0:
        grain_utils.ensure_absl_flags_parsed()

    def build(position: int) -> Any:
        ds = grain.MapDataset.source(plan)
        if position:
            ds = ds[position:]
        ds = ds.map(collate).to_iter_dataset(read)
        if cfg.worker_count > 0:
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=cfg.worker_count,
                per_worker_buffer_size=max(1, cfg.prefetch_buffer)),
                worker_init_fn=grain_utils.worker_init)
        return iter(ds)

    report = PipelineReport(name, batches_per_epoch=plan.batches_per_epoch,
                            tokenized=cfg.tokenized, batch_size=plan.local_batch,
                            log_level=logging.INFO if train else logging.DEBUG)
    return PipelineIterator(build, plan, stats, report, look_ahead=train)


def iterate_eval(source: Sequence[Mapping[str, Any]], cfg: PipelineConfig
                 ) -> PipelineIterator:
    """Every utterance of ``source`` once, in order, the last batch padded."""
    return make_pipeline(source, cfg, train=False)
