"""The alpha codec's data: a source (the embedded corpus by default) through the grain
pipeline into left-padded whole-utterance batches with phoneme tokens for the CTC stage.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator

from common.data.batching import round_up
from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.sources import open_source
from common.data.vocab import Vocab
from tokenizer.alpha.config import AlphaConfig

log = logging.getLogger(__name__)

PHONEMES_PER_SECOND = 40  # a generous bound on phoneme symbols per second of speech


def resolve_data(cfg: AlphaConfig) -> AlphaConfig:
    """Fill in what the data decides: the corpus path (built on first use), the phoneme
    vocabulary and with it the stage-1 codebook size. Returns the completed config
    (what the checkpoint saves, so inference rebuilds the same model)."""
    data, q = cfg.data, cfg.quantizer
    source = data.source
    if source.kind == "corpus" and not source.path:
        from common.data.corpus import default_corpus

        root = default_corpus(sample_rate=cfg.sample_rate, hours=source.corpus_hours)
        source = dataclasses.replace(source, path=str(root),
                                     corpus_sample_rate=cfg.sample_rate)
    vocab_path = data.phoneme_vocab
    if not vocab_path and source.kind == "corpus":
        vocab_path = os.path.join(source.path, "phoneme_vocab.json")
    data = dataclasses.replace(data, source=source, phoneme_vocab=vocab_path)
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


def pipeline_config(cfg: AlphaConfig) -> PipelineConfig:
    data = cfg.data
    use_ctc = cfg.quantizer.kind == "phoneme_bsq" and cfg.loss.ctc > 0 and data.phoneme_vocab
    max_tokens = data.max_tokens
    if use_ctc and max_tokens is None:
        # A fixed phoneme length, not the batch's longest: the step's shapes then depend on
        # the audio bucket alone, so it compiles once per bucket rather than again for each
        # new transcript length (minutes each on a CPU); several processes need it anyway.
        max_tokens = round_up(int(data.max_seconds * PHONEMES_PER_SECOND), 16)
    return PipelineConfig(
        sample_rate=cfg.sample_rate, batch_size=data.batch_size, segment_seconds=None,
        max_seconds=data.max_seconds, long_utterances="skip",
        bucket_seconds=data.bucket_seconds, frame_hops=(cfg.codec.hop,),
        loudness_dbfs=data.loudness_dbfs,
        phoneme_vocab=data.phoneme_vocab if use_ctc else None, max_tokens=max_tokens,
        long_tokens="skip",
        seed=cfg.train.seed, worker_count=data.workers, bad_input=data.source.bad_input)


def make_data(cfg: AlphaConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config."""
    pcfg = pipeline_config(cfg)
    train_source = open_source(cfg.data.source, cfg.data.train_split)
    eval_source = open_source(cfg.data.source, cfg.data.eval_split)
    log.info("data: %d train / %d eval utterances from %s", len(train_source),
             len(eval_source), cfg.data.source.path or cfg.data.source.kind)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    return make_pipeline(train_source, pcfg), lambda: iterate_eval(eval_source, eval_cfg)
