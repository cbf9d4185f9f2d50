"""Arrays to pictures for the run logger: spectrograms and images as uint8 RGB, and PNG.

Colours come from matplotlib's colormaps (no pyplot, so no backend is involved) and
PNGs from Pillow. Both are imported on first use: matplotlib takes seconds to import,
and a run pays for it only when it logs media.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["apply_colormap", "encode_png", "render_spectrogram", "to_uint8_image"]


def apply_colormap(x: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Values ``[...]`` in [0, 1] (clipped; NaN -> 0) to uint8 RGB ``[..., 3]`` through
    matplotlib's colormap ``name`` (viridis: dark blue to yellow, luminance increasing)."""
    import matplotlib

    x = np.clip(np.nan_to_num(np.asarray(x, np.float64), nan=0.0), 0.0, 1.0)
    rgba = np.asarray(matplotlib.colormaps[name](x), np.float64)
    # Rounded, not truncated as the colormap's bytes=True does: the nearest uint8 colour.
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def render_spectrogram(spec: np.ndarray, vmin: float | None = None,
                       vmax: float | None = None) -> np.ndarray:
    """``[frames, bins]`` -> uint8 ``[bins, frames, 3]``: time left to right, bin 0 at the
    bottom, colour scaled from ``vmin`` to ``vmax`` (default: the finite min and max)."""
    spec = np.asarray(spec, np.float64)
    if spec.ndim != 2:
        raise ValueError(f"spectrogram must be [frames, bins], got shape {spec.shape}")
    finite = spec[np.isfinite(spec)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
    scaled = (spec - lo) / (hi - lo) if hi > lo else np.zeros_like(spec)
    return apply_colormap(scaled.T[::-1])


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """``HxW`` / ``HxWx1`` / ``HxWx3`` to uint8 ``HxW`` / ``HxWx3``; floats are min-max
    normalised, bools map to 0 / 255, uint8 is kept."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise ValueError(f"image must be HxW or HxWx3, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    img = img.astype(np.float64)
    finite = img[np.isfinite(img)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.round(np.clip(np.nan_to_num(scaled), 0, 1) * 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``HxW`` (grey) or ``HxWx3`` (RGB) as PNG file bytes (lossless)."""
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of images ``[N, H, W, C]`` in [-1, 1] -> one uint8 ``[rows * H, N * W, C]``
    picture (a 1-pixel black rule between images)."""
    def row(x):
        x = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 1), (0, 1), (0, 0)),
                   constant_values=-1.0)
        return np.concatenate(list(x), axis=1)
    grid = np.concatenate([row(r) for r in rows], axis=0)
    return np.clip(np.round((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)
