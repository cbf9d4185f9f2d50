"""``ImagePipelineConfig``: which images, how they are augmented and batched
(``common.data.images``).

Its own module so that configs (a model's data config, the CLIs) import it without
grain, numpy and the image sources.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

SOURCES = ("scenes", "digits", "sklearn", "folder")


@dataclasses.dataclass(frozen=True)
class ImagePipelineConfig:
    """Which images, how they are augmented, and how they are batched.

    Attributes:
      source: one of ``SOURCES`` (see the module doc).
      folder: the image folder, for ``source="folder"``.
      size: output images are ``size`` x ``size``.
      count: images in the set: exactly this many scenes; at most this many otherwise.
      seed: scene content, shuffles and augmentation all derive from it.
      scene_size: pixels a scene is rendered at before cropping (0: just enough that the
        smallest crop is not upsampled, ``ceil(size / crop_scale[0])``).
      crop_scale: (low, high) side of the square crop as a fraction of the shorter side.
      random_crop: draw the crop's size and position; False: a centred crop of
        ``crop_scale[1]`` (for evaluation).
      hflip: mirror half of the images left-right (turn it off for digits and text).
      normalise: float32 in [-1, 1]; False: uint8 in [0, 255] (for viewing and storage).
      batch_size: GLOBAL batch size (a multiple of the process count).
      drop_remainder: drop a last batch that would be smaller; False keeps it (an
        evaluation that must score every image; a smaller batch compiles anew).
      num_epochs: None: forever (reshuffled and re-augmented each epoch).
      shuffle: shuffle each epoch.
      worker_count: grain worker processes (0: in this process).
      read_threads: threads per process that prepare batches.
      prefetch_buffer: batches buffered per process (and per worker).
      process_index: this host's index among the data-loading processes (None: from jax).
      process_count: how many processes share the data (None: from jax).
    """

    source: Literal["scenes", "digits", "sklearn", "folder"] = "scenes"
    folder: str = ""
    size: int = 64
    count: int = 10_000
    seed: int = 0
    scene_size: int = 0
    crop_scale: tuple[float, float] = (0.75, 1.0)
    random_crop: bool = True
    hflip: bool = True
    normalise: bool = True
    batch_size: int = 32
    drop_remainder: bool = True
    num_epochs: int | None = None
    shuffle: bool = True
    worker_count: int = 0
    read_threads: int = 2
    prefetch_buffer: int = 2
    process_index: int | None = None
    process_count: int | None = None

    def __post_init__(self):
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"ImagePipelineConfig.{msg}")

        need(self.source in SOURCES, f"source must be one of {SOURCES}, got {self.source!r}")
        need(self.source != "folder" or bool(self.folder),
             "folder must name a folder when source='folder'")
        need(self.size >= 4, f"size must be >= 4, got {self.size}")
        need(self.count >= 1, f"count must be >= 1, got {self.count}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(self.scene_size >= 0, f"scene_size must be >= 0, got {self.scene_size}")
        need(len(self.crop_scale) == 2, f"crop_scale must be (low, high), got {self.crop_scale}")
        lo, hi = self.crop_scale
        need(0 < lo <= hi <= 1,
             f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.num_epochs is None or self.num_epochs >= 1,
             f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        need(min(self.worker_count, self.read_threads, self.prefetch_buffer) >= 0,
             "worker_count, read_threads and prefetch_buffer must be >= 0")

    @property
    def render_size(self) -> int:
        """Pixels a scene is rendered at."""
        return self.scene_size or math.ceil(self.size / self.crop_scale[0] - 1e-6)


# ---------------------------------------------------------------------------------------
# Sources
