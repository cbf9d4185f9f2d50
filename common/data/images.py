"""Image sets for the image VAE and their grain pipeline: crop and scale, flip, normalise, batch.

Sources are random-access (``len``, ``[i]``) and give ``{"id": str, "image": uint8
[H, W, 3]}`` (and ``"label": int`` where the set has classes: the digits); none
downloads anything:

  scenes   procedural landscapes and still lifes (``common.data.scenes``), any count,
           deterministic from (seed, index): the default set
  digits   scikit-learn's 1,797 handwritten digits, 8x8 grey, labelled 0-9 (a tiny
           sanity set, and class-conditional generation's)
  sklearn  scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640); needs Pillow
  folder   the PNG / JPEG files (Pillow) and ``.npy`` arrays under a folder, sorted by path

``make_image_pipeline(cfg)`` builds, with grain's dataset API::

    MapDataset.source -> this process's shard -> shuffle -> repeat(num_epochs)
      -> random_map(crop + scale + flip + normalise) -> batch(drop_remainder)
      -> [p:] (resume) -> to_iter_dataset(ReadOptions) -> mp_prefetch(worker_count)

and yields ``{"image": float32 [B, size, size, 3]}`` in [-1, 1] (uint8 in [0, 255] with
``normalise=False``), with ``"label": int32 [B]`` when the source has labels,
``B = batch_size // process_count``. Crops are square windows of a
random fraction (``crop_scale``) of the image's shorter side at a random sub-pixel
position, resampled in one step with an anti-aliased linear filter (the filter of
``jax.image.scale_and_translate(method="linear", antialias=True)``).

Determinism: grain seeds each element's generator from (seed, epoch, position), so the
batches depend only on the config. The iterator's state is the number of batches
delivered; a restored iterator continues exactly, with any worker count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np

from common.data import grain_utils
from common.data.image_config import ImagePipelineConfig
from common.data.records import DataError
from common.data.scenes import render_scene

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


def to_rgb_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """Any grey / grey+alpha / RGB / RGBA image array as uint8 [H, W, 3].

    Alpha is dropped; uint16 keeps its high byte; floats are read as [0, 1].
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or min(arr.shape[:2]) < 1:
        raise DataError(f"{where}: not an image array (shape {arr.shape})")
    arr = arr[..., :1] if arr.shape[-1] == 2 else arr[..., :3]
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: image has NaN or infinite values")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise DataError(f"{where}: unsupported image dtype {arr.dtype}")
    return np.ascontiguousarray(np.broadcast_to(arr, (*arr.shape[:2], 3)))


class SceneSource:
    """``count`` procedural scenes of ``size`` pixels; scene ``i`` is ``render_scene(seed, i)``."""

    def __init__(self, count: int, size: int, seed: int = 0):
        self.count, self.size, self.seed = count, size, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.count:
            raise IndexError(f"scene index {index} out of range [0, {self.count})")
        return {"id": f"scenes/{self.seed}/{index}",
                "image": render_scene(self.seed, index, self.size)}


class ArraySource:
    """Images held in memory: a list of uint8 [H, W, 3] arrays, their ids and, optionally,
    their integer class labels."""

    def __init__(self, images: list[np.ndarray], ids: list[str],
                 labels: list[int] | None = None):
        if len(images) != len(ids) or not images:
            raise DataError(f"ArraySource needs as many ids as images, and at least one "
                            f"(got {len(images)} images, {len(ids)} ids)")
        if labels is not None and len(labels) != len(images):
            raise DataError(f"ArraySource got {len(labels)} labels for {len(images)} images")
        self.images = [to_rgb_uint8(im, i) for im, i in zip(images, ids, strict=True)]
        self.ids = list(ids)
        self.labels = None if labels is None else [int(x) for x in labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = {"id": self.ids[int(index)], "image": self.images[int(index)]}
        if self.labels is not None:
            out["label"] = self.labels[int(index)]
        return out


def _sklearn_file(relative: str) -> Path:
    """A data file scikit-learn ships, found without importing it (seconds saved)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-learn is not installed: sources 'digits' and 'sklearn' need it")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"scikit-learn has no {relative} (looked at {path})")
    return path


DIGIT_CLASSES = 10


def digits_source(count: int | None = None) -> ArraySource:
    """scikit-learn's 1,797 handwritten digits (bright ink on black), uint8 [8, 8, 3], with
    their labels 0-9.

    Read from ``sklearn/datasets/data/digits.csv.gz`` (what ``load_digits`` reads: 64
    pixels in 0..16 and the label per row).
    """
    rows = np.loadtxt(_sklearn_file("datasets/data/digits.csv.gz"), delimiter=",",
                      dtype=np.float32)[:count]
    ims = rows[:, :64].reshape(-1, 8, 8) / 16.0
    return ArraySource(list(ims), [f"digits/{i}" for i in range(len(ims))],
                       rows[:, 64].astype(np.int64).tolist())


def _pillow(where: str):
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{where}: reading PNG / JPEG needs Pillow, which is not installed "
                        "(pip install pillow); .npy image arrays load without it") from None
    return Image


def sklearn_photos_source(count: int | None = None) -> ArraySource:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), uint8 [427, 640, 3].

    Read from ``sklearn/datasets/images`` (what ``load_sample_images`` reads); needs Pillow.
    """
    paths = [_sklearn_file(f"datasets/images/{n}") for n in ("china.jpg", "flower.jpg")]
    paths = paths[:count]
    return ArraySource([read_image(p) for p in paths], [f"sklearn/{p.name}" for p in paths])


def read_image(path: str | Path) -> np.ndarray:
    """A PNG / JPEG (Pillow) or ``.npy`` image file as uint8 [H, W, 3]."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable .npy image ({e})") from e
        return to_rgb_uint8(arr, str(path))
    pil_image = _pillow(str(path))
    try:
        with pil_image.open(path) as im:
            if im.mode not in ("L", "LA", "RGB", "RGBA"):  # palette, CMYK, 16-bit, ...
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            arr = np.asarray(im)
    except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"{path}: unreadable image ({e})") from e
    return to_rgb_uint8(arr, str(path))


class FolderSource:
    """Image files under ``folder`` (``IMAGE_SUFFIXES``, recursively, sorted), read lazily.

    A file that turns out unreadable raises ``DataError`` naming it.
    """

    def __init__(self, folder: str | Path, count: int | None = None):
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"image folder {root} does not exist")
        self.paths = sorted(p for p in root.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not self.paths:
            raise DataError(f"image folder {root} has no {'/'.join(IMAGE_SUFFIXES)} files")
        if any(p.suffix.lower() != ".npy" for p in self.paths):
            _pillow(str(root))  # fail now, not in a worker
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[int(index)]
        return {"id": str(path.relative_to(self.root)), "image": read_image(path)}


def make_source(cfg: ImagePipelineConfig) -> Any:
    """The random-access source ``cfg.source`` names, at most ``cfg.count`` images."""
    if cfg.source == "scenes":
        return SceneSource(cfg.count, cfg.render_size, cfg.seed)
    if cfg.source == "digits":
        return digits_source(cfg.count)
    if cfg.source == "sklearn":
        return sklearn_photos_source(cfg.count)
    return FolderSource(cfg.folder, cfg.count)


# ---------------------------------------------------------------------------------------
# Crop, scale, flip, normalise


def resample_matrix(in_len: int, start: float, length: float, out_len: int) -> np.ndarray:
    """float32 [out_len, in_len]: linear resampling of the window [start, start + length).

    Coordinates are in input pixels (pixel i covers [i, i + 1)). When shrinking, the
    triangle kernel widens with the scale, so each output pixel averages what it covers
    (anti-aliasing); rows are normalised over the input pixels inside the image.
    """
    scale = length / out_len  # input pixels per output pixel
    centres = start + (np.arange(out_len) + 0.5) * scale - 0.5
    dist = np.abs(centres[:, None] - np.arange(in_len)[None, :]) / max(scale, 1.0)
    w = np.maximum(0.0, 1.0 - dist)
    return (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _taps(wmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A resampling matrix [O, I] as per-row taps: indices int [O, K], weights f32 [O, K]."""
    nz = wmat > 0  # each row's support is one contiguous run
    idx = nz.argmax(axis=1)[:, None] + np.arange(max(1, int(nz.sum(axis=1).max())))
    inside = idx < wmat.shape[1]
    idx = np.minimum(idx, wmat.shape[1] - 1)
    return idx, np.take_along_axis(wmat, idx, axis=1) * inside


def _resample_rows(x: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x`` [I, ...] -> float32 [O, ...]: each output row a weighted sum of K input rows."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = w[:, 0].reshape(shape) * x[idx[:, 0]]
    for k in range(1, idx.shape[1]):
        out += w[:, k].reshape(shape) * x[idx[:, k]]
    return out


def crop_resize(image: np.ndarray, top: float, left: float, side: float, size: int,
                flip: bool = False) -> np.ndarray:
    """The square window (top, left, side) of ``image`` [H, W, C] as float32 [size, size, C].

    Values stay in the input's range (every output pixel is a convex mix of input ones).
    """
    # Gathered taps rather than dense matrix products: a few multiply-adds per pixel, no
    # BLAS threads (which crawl when grain's threads and workers already fill the cores),
    # and elementwise float32 arithmetic in a fixed order, so the same bits everywhere.
    h, w = image.shape[:2]
    iy, wy = _taps(resample_matrix(h, top, side, size))
    ix, wx = _taps(resample_matrix(w, left, side, size))
    if flip:
        ix, wx = ix[::-1], wx[::-1]
    rows = _resample_rows(image.astype(np.float32), iy, wy)  # [size, W, C]
    return _resample_rows(rows.transpose(1, 0, 2), ix, wx).transpose(1, 0, 2)


class Augment:
    """grain ``random_map``: ``{"id", "image" uint8 [H, W, 3]}`` -> ``{"image": [S, S, 3]}``
    (a ``"label"`` passes through as int32)."""

    def __init__(self, cfg: ImagePipelineConfig):
        self.cfg = cfg

    def __call__(self, element: Mapping[str, Any], rng: np.random.Generator
                 ) -> dict[str, np.ndarray]:
        cfg, image = self.cfg, element["image"]
        h, w = image.shape[:2]
        short = min(h, w)
        if cfg.random_crop:
            side = short * rng.uniform(*cfg.crop_scale)
            top, left = rng.uniform(0, h - side), rng.uniform(0, w - side)
        else:
            side = short * cfg.crop_scale[1]
            top, left = (h - side) / 2, (w - side) / 2
        flip = cfg.hflip and rng.random() < 0.5
        out = crop_resize(image, top, left, side, cfg.size, flip)
        if cfg.normalise:
            out = np.clip(out * np.float32(2 / 255) - 1, -1, 1)
        else:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if "label" in element:
            return {"image": out, "label": np.int32(element["label"])}
        return {"image": out}


# ---------------------------------------------------------------------------------------
# The pipeline


class ImageIterator(grain_utils.PositionIterator):
    """Batches from a grain iterator; JSON state ``{"position", "config"}``.

    ``position`` counts the batches delivered; ``set_state`` rebuilds the grain iterator
    there (batch ``p`` does not depend on the worker count, so neither does the state).
    ``config`` fingerprints what decides the batches: restoring into a pipeline with a
    different set, seed, size or batching fails instead of silently diverging (a changed
    ``num_epochs`` or worker count is fine).
    """

    fingerprint_key = "config"
    what = "image iterator"
    _mismatch_hint = "the source, seed, size, augmentation or batching changed"


def _fingerprint(cfg: ImagePipelineConfig, p_index: int, p_count: int, n: int) -> str:
    # Batch p does not depend on these (num_epochs only says where the stream ends).
    ignore = ("num_epochs", "worker_count", "read_threads", "prefetch_buffer")
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ignore}
    fields.update(process_index=p_index, process_count=p_count, source_len=n)
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_image_dataset(cfg: ImagePipelineConfig, source: Any = None) -> grain.MapDataset:
    """This process's batches as a grain ``MapDataset`` (see the module doc).

    ``source`` overrides ``make_source(cfg)`` (any random-access source of
    ``{"id", "image"}`` dicts).
    """
    return _dataset(cfg, source)[0]


def _dataset(cfg: ImagePipelineConfig, source: Any) -> tuple[grain.MapDataset, str]:
    p_index, p_count = grain_utils.process_shard(cfg.process_index, cfg.process_count)
    local = grain_utils.local_batch_size(cfg.batch_size, p_count)
    source = make_source(cfg) if source is None else source
    n = len(source) // p_count * p_count  # equal shards: every process steps alike
    if n == 0:
        raise DataError(f"image source has {len(source)} images, fewer than the "
                        f"{p_count} processes that share it")
    # Seeds derived per process: shards differ, and so do their augmentations.
    shuffle_seed, augment_seed = map(int, np.random.SeedSequence(
        [cfg.seed, p_index]).generate_state(2))
    ds = grain.MapDataset.source(source)[:n][p_index::p_count]
    if cfg.shuffle:
        ds = ds.shuffle(seed=shuffle_seed)
    ds = ds.repeat(cfg.num_epochs).random_map(Augment(cfg), seed=augment_seed)
    return (ds.batch(local, drop_remainder=cfg.drop_remainder),
            _fingerprint(cfg, p_index, p_count, n))


def make_image_pipeline(cfg: ImagePipelineConfig, source: Any = None) -> ImageIterator:
    """An iterator of ``{"image": [B, size, size, 3]}`` batches (see the module doc)."""
    batches, fingerprint = _dataset(cfg, source)
    read = grain.ReadOptions(num_threads=cfg.read_threads,
                             prefetch_buffer_size=cfg.prefetch_buffer)
    if cfg.worker_count > 0:
        grain_utils.ensure_absl_flags_parsed()

    def build(position: int) -> Any:
        ds = batches[position:] if position else batches
        ds = ds.to_iter_dataset(read)
        if cfg.worker_count > 0:
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=cfg.worker_count, per_worker_buffer_size=max(1, cfg.prefetch_buffer)),
                worker_init_fn=grain_utils.worker_init)
        return iter(ds)

    return ImageIterator(build, fingerprint)
