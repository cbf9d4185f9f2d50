"""The image VAE's batches: ``common.data.images`` pipelines over a training set and a
held-out one (see ``ImageVaeData``). Batches are ``{"image": float32 [B, S, S, 3]}`` in
[-1, 1]."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from common.data.image_config import ImagePipelineConfig
from common.data.images import SceneSource, make_image_pipeline, make_source
from common.data.records import DataError
from worldmodel.image.vae.config import ImageVaeConfig, ImageVaeData

# Held-out scenes come from another seed: scene i of a seed is a function of (seed, i),
# so a different seed gives scenes the training set never holds.
EVAL_SEED_OFFSET = 1_000_003


class Subset:
    """Images ``[start, stop)`` of a random-access source."""

    def __init__(self, source: Any, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range [0, {len(self)})")
        return self.source[self.start + index]


def split_sources(data: ImageVaeData) -> tuple[Any, Any]:
    """``(train source, held-out source)`` (see ``ImageVaeData``)."""
    train, n_eval = data.train, data.eval_count
    if train.source == "scenes":
        return (SceneSource(train.count, train.render_size, train.seed),
                SceneSource(n_eval, train.render_size, train.seed + EVAL_SEED_OFFSET))
    source = make_source(dataclasses.replace(train, count=train.count + n_eval))
    n = len(source)
    if n <= n_eval:
        raise DataError(f"image source {train.source!r} has {n} images: too few to hold "
                        f"out data.eval_count={n_eval} and train on the rest")
    return Subset(source, 0, n - n_eval), Subset(source, n - n_eval, n)


def resolve_data(cfg):
    """Nothing to resolve (no upstream run): the config (the image VAE's, or any with an
    ``ImageVaeData`` ``data``: the recurrent VAE's) as given."""
    return cfg


def make_data(cfg: ImageVaeConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` of ``cfg.data`` (``make_image_data``)."""
    return make_image_data(cfg.data)


def one_pass(train: ImagePipelineConfig, batch_size: int, *,
             drop_remainder: bool | None = None) -> ImagePipelineConfig:
    """``train``'s pipeline as evaluation reads it: every image once, in order, centred
    and unflipped (no augmentation), in this process, ``batch_size`` per batch;
    ``drop_remainder`` None keeps ``train``'s."""
    keep = train.drop_remainder if drop_remainder is None else drop_remainder
    return dataclasses.replace(train, random_crop=False, hflip=False, shuffle=False,
                               num_epochs=1, worker_count=0, drop_remainder=keep,
                               batch_size=batch_size)


def make_image_data(data: ImageVaeData
                    ) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)``: augmented training batches (resumable),
    and one pass of centred, unflipped crops of the held-out images."""
    train_src, eval_src = split_sources(data)
    train = data.train
    eval_cfg = one_pass(train, min(train.batch_size, data.eval_count))
    return (make_image_pipeline(train, train_src),
            lambda: make_image_pipeline(eval_cfg, eval_src))
