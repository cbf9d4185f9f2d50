"""Rendering for the logger: colormap, spectrogram orientation, image scaling, PNG."""

from __future__ import annotations

import io
import struct

import numpy as np
import PIL.Image
import pytest

from common.train.render import apply_colormap, encode_png, render_spectrogram, to_uint8_image


def test_render_spectrogram_orientation():
    frames, bins = 7, 5
    spec = np.zeros((frames, bins))
    spec[:, 0] = 1.0  # energy only in the lowest bin
    img = render_spectrogram(spec)
    assert img.dtype == np.uint8 and img.shape == (bins, frames, 3)
    top, bottom = apply_colormap(0.0), apply_colormap(1.0)
    assert (img[-1] == bottom).all() and (img[:-1] == top).all()
    # Time runs left to right.
    spec = np.zeros((frames, bins))
    spec[0] = 1.0
    img = render_spectrogram(spec)
    assert (img[:, 0] == bottom).all() and (img[:, 1:] == top).all()
    # Constant and non-finite inputs still render.
    assert render_spectrogram(np.full((3, 2), np.nan)).shape == (2, 3, 3)


def test_colormap_and_images():
    cmap = apply_colormap(np.linspace(0, 1, 9))
    assert cmap.shape == (9, 3) and cmap.dtype == np.uint8
    assert tuple(cmap[0]) == (68, 1, 84) and tuple(cmap[-1]) == (253, 231, 37)
    lum = cmap.astype(float) @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(lum) > 0)  # perceptually ordered: dark to bright
    assert to_uint8_image(np.array([[0.0, 2.0]])).tolist() == [[0, 255]]
    assert to_uint8_image(np.ones((2, 2, 1), bool)).tolist() == [[255, 255], [255, 255]]
    with pytest.raises(ValueError, match="HxW"):
        to_uint8_image(np.zeros((2, 2, 2)))
    img = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    png = encode_png(img)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    # IHDR: width, height, 8-bit RGB; the pixels come back exactly (lossless).
    w, h, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert (w, h, depth, colour) == (4, 3, 8, 2)
    decoded = PIL.Image.open(io.BytesIO(png))
    assert decoded.mode == "RGB" and (np.asarray(decoded) == img).all()
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    decoded = PIL.Image.open(io.BytesIO(encode_png(grey)))
    assert decoded.mode == "L" and (np.asarray(decoded) == grey).all()
