"""SIVE's data: whole utterances (cropped past ``max_seconds``, then without CTC) with
phoneme targets and the speaker's index in the run's table.

``resolve_data`` fixes the corpus, the phoneme vocabulary (the corpus's
``phoneme_vocab.json`` unless given; its size is the CTC head's) and the speaker table
(the training split's speakers). Audio is padded to whole steps of the front end's 4x
subsampling, so a left-padded row's frames line up with its unpadded self.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

from common.data.batching import round_up
from common.data.pipeline import PipelineConfig
from common.data.vocab import Vocab
from worldmodel.audio.data import resolve_source, seen_speaker_data, speaker_table
from worldmodel.audio.sive.config import SiveConfig

PHONEMES_PER_SECOND = 40  # a generous bound on phoneme symbols per second of speech
SUBSAMPLING = 4  # the content encoder's front end


def resolve_data(cfg: SiveConfig) -> SiveConfig:
    data = cfg.data
    source = resolve_source(data.source, cfg.features.sample_rate)
    vocab = data.phoneme_vocab
    if not vocab:
        if source.kind != "corpus":
            raise ValueError("data.phoneme_vocab: give the phoneme vocabulary (a Vocab "
                             "JSON) for a source other than the embedded corpus")
        vocab = os.path.join(source.path, "phoneme_vocab.json")
    size = len(Vocab.load(vocab))
    speakers = speaker_table(source, data.train_split, data.speakers)
    encoder = dataclasses.replace(cfg.encoder, vocab=size)
    return dataclasses.replace(cfg, encoder=encoder, data=dataclasses.replace(
        data, source=source, phoneme_vocab=vocab, speakers=speakers))


def pipeline_config(cfg: SiveConfig) -> PipelineConfig:
    data = cfg.data
    return PipelineConfig(
        sample_rate=cfg.features.sample_rate, batch_size=data.batch_size,
        segment_seconds=None, max_seconds=data.max_seconds, long_utterances="crop",
        bucket_seconds=data.bucket_seconds,
        frame_hops=(SUBSAMPLING * cfg.features.hop_length,),
        loudness_dbfs=data.loudness_dbfs, phoneme_vocab=data.phoneme_vocab,
        max_tokens=round_up(int(data.max_seconds * PHONEMES_PER_SECOND), 16),
        long_tokens="mask", phonemize=True, speakers=data.speakers, seed=cfg.train.seed,
        worker_count=data.workers, bad_input=data.source.bad_input)


def make_data(cfg: SiveConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config."""
    data = cfg.data
    return seen_speaker_data(data.source, data.train_split, data.eval_split, data.speakers,
                             pipeline_config(cfg))
