"""The alpha codec's data: a source (the embedded corpus by default) through the grain
pipeline into left-padded whole-utterance batches with phoneme tokens for the CTC stage.

Training batches hold utterances of up to ``data.max_seconds``; longer ones are cropped
to a random window of that length (as DAC and EnCodec train) and keep their audio for
reconstruction, but not their phonemes, which no longer match it: their ``phonemes_valid``
rows are all False, and ``phoneme_ctc_loss`` leaves such rows out. The pipeline logs how
many utterances and seconds each rule kept, and stops with an error naming the reasons
when it keeps nothing.

The stage-1 vocabulary must be fixed before the model is built (its size is the stage-1
codebook size). ``resolve_data`` decides it:

- ``--data.phoneme-vocab FILE``: that vocabulary;
- the embedded corpus: its ``phoneme_vocab.json``;
- ``--quantizer.phoneme-vocab N`` and no file: stage 1 trains without CTC;
- otherwise (LJSpeech, LibriTTS, Common Voice, a folder or HF dataset with transcripts):
  the symbols of the training split's phonemes, their own or their transcripts phonemized
  by espeak-ng in their language (``common.data.phonemize.phoneme_vocab_for``: the corpus's
  engine and symbol tokenisation), written into the run as ``RUN/phoneme_vocab.json``.
  The config keeps that path (``data.phoneme_vocab`` in ``config.json``), so evaluation and
  inference rebuild the same codebook and score against the same symbols; a run resumed
  (or re-run under the same name) reads the file back rather than deriving it again, so
  its codebook matches its checkpoint even if the data changed. The run's name is pinned
  (``train.run_name``) so that the file and the checkpoints share one directory.

Utterances without phonemes are phonemized on the fly in the pipeline (cached per text).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from common.data.batching import round_up
from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.sources import SourceConfig, open_source
from common.data.vocab import Vocab
from tokenizer.alpha.config import AlphaConfig

log = logging.getLogger(__name__)

PHONEMES_PER_SECOND = 40  # a generous bound on phoneme symbols per second of speech
VOCAB_FILE = "phoneme_vocab.json"
RUN_KIND = "tokenizer.alpha"


@functools.lru_cache(maxsize=4)
def _open(source: SourceConfig, split: str):
    """``open_source``, once per (source, split): deriving the vocabulary and building the
    pipelines read the same metadata (and probe the same headers) once."""
    return open_source(source, split)


def resolve_data(cfg: AlphaConfig) -> AlphaConfig:
    """Fill in what the data decides: the corpus path (built on first use), the phoneme
    vocabulary (see the module doc) and with it the stage-1 codebook size. Returns the
    completed config (what the checkpoint saves, so inference rebuilds the same model)."""
    data, q = cfg.data, cfg.quantizer
    source = data.source
    if source.kind == "corpus" and not source.path:
        from common.data.corpus import default_corpus

        root = default_corpus(sample_rate=cfg.sample_rate, hours=source.corpus_hours,
                              holdout_speakers=source.corpus_holdout_speakers)
        source = dataclasses.replace(source, path=str(root),
                                     corpus_sample_rate=cfg.sample_rate)
    vocab_path = data.phoneme_vocab
    if not vocab_path and source.kind == "corpus":
        vocab_path = os.path.join(source.path, VOCAB_FILE)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(data, source=source))
    if (q.kind == "phoneme_bsq" and not vocab_path and not q.phoneme_vocab
            and cfg.loss.ctc > 0):
        vocab_path, cfg = _run_phoneme_vocab(cfg)
    data = dataclasses.replace(cfg.data, phoneme_vocab=vocab_path)
    if q.kind == "phoneme_bsq":
        if vocab_path:
            size = len(Vocab.load(vocab_path))
            if q.phoneme_vocab and q.phoneme_vocab != size:
                raise ValueError(f"quantizer.phoneme_vocab={q.phoneme_vocab} but the phoneme "
                                 f"vocabulary {vocab_path} has {size} symbols")
            q = dataclasses.replace(q, phoneme_vocab=size)
        elif not q.phoneme_vocab:
            raise ValueError("the phoneme_bsq quantizer needs a phoneme vocabulary: pass "
                             "--data.phoneme-vocab FILE, or --quantizer.phoneme-vocab N to "
                             "train the stage-1 codebook without CTC")
    return dataclasses.replace(cfg, data=data, quantizer=q)


def _run_phoneme_vocab(cfg: AlphaConfig) -> tuple[str, AlphaConfig]:
    """``(RUN/phoneme_vocab.json, cfg with the run name pinned)``: the run's vocabulary,
    read back when the run already has one, else derived from the training split."""
    from common.data.phonemize import phoneme_vocab_for
    from common.train.loop import resolve_run_dir

    run_dir = resolve_run_dir(cfg.train, RUN_KIND)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_name=run_dir.name))
    path = run_dir / VOCAB_FILE
    if path.is_file():
        log.info("phoneme vocabulary: %s (%d symbols, this run's own)", path,
                 len(Vocab.load(path)))
        return str(path.resolve()), cfg
    source = cfg.data.source
    vocab = phoneme_vocab_for(_open(source, cfg.data.train_split), source.language)
    _save_atomic(vocab, path)
    log.info("phoneme vocabulary: %d symbols, saved as %s (the stage-1 codebook size)",
             len(vocab), path)
    return str(path.resolve()), cfg


def _save_atomic(vocab: Vocab, path: Path) -> None:
    # Every process derives the same vocabulary; on a shared file system they may write
    # the same file at once, so each writes its own temporary file and renames it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    vocab.save(tmp)
    os.replace(tmp, path)


def pipeline_config(cfg: AlphaConfig, *, crop: bool = False) -> PipelineConfig:
    """The pipeline of a resolved config. ``crop``: utterances longer than ``max_seconds``
    are cropped (no CTC target) and over-long transcripts masked, as training does;
    without it they are skipped (counted), for evaluating whole utterances."""
    data = cfg.data
    use_ctc = bool(cfg.quantizer.kind == "phoneme_bsq" and cfg.loss.ctc > 0
                   and data.phoneme_vocab)
    max_tokens = data.max_tokens
    if use_ctc and max_tokens is None:
        # A fixed phoneme length, not the batch's longest: the step's shapes then depend on
        # the audio bucket alone, so it compiles once per bucket rather than again for each
        # new transcript length (minutes each on a CPU); several processes need it anyway.
        max_tokens = round_up(int(data.max_seconds * PHONEMES_PER_SECOND), 16)
    return PipelineConfig(
        sample_rate=cfg.sample_rate, batch_size=data.batch_size, segment_seconds=None,
        max_seconds=data.max_seconds, long_utterances="crop" if crop else "skip",
        bucket_seconds=data.bucket_seconds, frame_hops=(cfg.codec.hop,),
        loudness_dbfs=data.loudness_dbfs,
        phoneme_vocab=data.phoneme_vocab if use_ctc else None, max_tokens=max_tokens,
        long_tokens="mask" if crop else "skip", phonemize=use_ctc,
        language=data.source.language,
        seed=cfg.train.seed, worker_count=data.workers, bad_input=data.source.bad_input)


def make_data(cfg: AlphaConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config."""
    pcfg = pipeline_config(cfg, crop=True)
    train_source = _open(cfg.data.source, cfg.data.train_split)
    eval_source = _open(cfg.data.source, cfg.data.eval_split)
    log.info("data: %d train / %d eval utterances from %s", len(train_source),
             len(eval_source), cfg.data.source.path or cfg.data.source.kind)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    return make_pipeline(train_source, pcfg), lambda: iterate_eval(eval_source, eval_cfg)
