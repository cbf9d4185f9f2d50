"""Procedural scenes: an endless, deterministic image set rendered with numpy alone.

``render_scene(seed, index, size)`` draws image ``index`` of the set named by ``seed``:
the same (seed, index) gives the same scene on every machine and in every process, so
the set needs no files and shards freely. Two kinds of scene, half each:

  landscape   sky gradient (day, dusk, overcast, night), a sun or moon with a glow, soft
              clouds, one to three ridge lines of hills fading into the haze, sometimes
              a lake that mirrors the sky, trees and houses standing on the near ground
  still life  a wall (flat, striped, checkered or graded) over a floor, and two to seven
              overlapping shapes (discs shaded as spheres, ellipses, rotated boxes,
              triangles, regular polygons) with flat, striped, checkered or graded fills,
              soft shading and drop shadows

then a vignette, an exposure / white-balance jitter and pixel noise. Geometry lives in
unit coordinates (x right, y down, both in [0, 1]) and every edge is anti-aliased from a
signed distance, so a scene looks the same at 64 and 256 pixels (only the noise grain
differs). All drawing is whole-image array arithmetic: a few hundred 128x128 images per
second on one core.
"""

from __future__ import annotations

import colorsys

import numpy as np

KINDS = ("landscape", "still_life")


def render_scene(seed: int, index: int, size: int) -> np.ndarray:
    """Scene ``index`` of the set ``seed`` as uint8 [size, size, 3] (RGB)."""
    if seed < 0 or index < 0:
        raise ValueError(f"render_scene: seed and index must be >= 0, got {seed}, {index}")
    if size < 4:
        raise ValueError(f"render_scene: size must be >= 4 pixels, got {size}")
    # SeedSequence mixes the pair, so neighbouring indices give unrelated streams.
    rng = np.random.default_rng([seed, index])
    g = _Grid(size)
    img = _landscape(rng, g) if rng.random() < 0.5 else _still_life(rng, g)
    img = _finish(rng, g, img)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class _Grid:
    """Pixel-centre coordinates y [S, 1] and x [1, S] in unit space, and a pixel's size."""

    def __init__(self, size: int):
        c = ((np.arange(size, dtype=np.float32) + 0.5) / size).astype(np.float32)
        self.size, self.y, self.x, self.px = size, c[:, None], c[None, :], 1.0 / size


# --- colours, coverage, blending ---------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.3, 0.95), rng.uniform(0.35, 1.0))


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.06) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 1
                   ).astype(np.float32)


def _f32(a) -> np.ndarray:
    # numpy scalars (np.cos of a float, an element of a float64 array) are not "weak" under
    # NEP 50: one of them silently makes a whole image float64 and twice as slow.
    return np.asarray(a, np.float32)


def _cover(sdf: np.ndarray, px: float, soft: float = 1.0) -> np.ndarray:
    """Coverage in [0, 1] of a region given its signed distance (negative inside).

    The edge ramps over ``soft`` pixels: one pixel anti-aliases, more blurs (clouds).
    """
    return np.clip(0.5 - _f32(sdf) * np.float32(1.0 / (px * soft)), 0.0, 1.0)


def _over(img: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    """``colour`` (RGB [3] or a map [S, S, 3]) painted over ``img`` with ``alpha`` [S, S]."""
    out = _f32(colour) - img
    out *= _f32(alpha)[..., None]
    out += img
    return out


def _lerp(c0, c1, t: np.ndarray) -> np.ndarray:
    c0 = _f32(c0)
    out = _f32(c1) - c0
    out = out * _f32(t)[..., None]
    out += c0
    return out


# --- signed distances (unit space, negative inside) ------------------------------------

def _sd_ellipse(g: _Grid, cx, cy, rx, ry) -> np.ndarray:
    # Exact for circles; for ellipses a scaled approximation, plenty for anti-aliasing.
    cx, cy, rx, ry = float(cx), float(cy), float(rx), float(ry)
    d = np.sqrt(((g.x - cx) / rx) ** 2 + ((g.y - cy) / ry) ** 2)
    return (d - 1.0) * min(rx, ry)


def _sd_box(g: _Grid, cx, cy, hw, hh, angle=0.0) -> np.ndarray:
    cx, cy, hw, hh = float(cx), float(cy), float(hw), float(hh)
    c, s = float(np.cos(angle)), float(np.sin(angle))
    u = (g.x - cx) * c + (g.y - cy) * s
    v = -(g.x - cx) * s + (g.y - cy) * c
    qu, qv = np.abs(u) - hw, np.abs(v) - hh
    outside = np.sqrt(np.maximum(qu, 0) ** 2 + np.maximum(qv, 0) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _sd_convex(g: _Grid, pts: np.ndarray) -> np.ndarray:
    """Convex polygon [K, 2] (x, y), any winding: the largest distance past an edge."""
    area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    d = None
    for a, b in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        e = b - a
        n = np.array([e[1], -e[0]]) / (np.hypot(*e) + 1e-9) * np.sign(area)
        di = (g.x - float(a[0])) * float(n[0]) + (g.y - float(a[1])) * float(n[1])
        d = di if d is None else np.maximum(d, di)
    return d


def _ngon(cx, cy, r, k: int, angle: float) -> np.ndarray:
    t = angle + 2 * np.pi * np.arange(k) / k
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


# --- fills ----------------------------------------------------------------------------

def _pattern(rng: np.random.Generator, g: _Grid, c1, period: float, angle: float,
             kind: str) -> np.ndarray:
    """A colour map [S, S, 3]: ``c1`` alternating with a second colour, or a gradient."""
    c2 = _colour(rng) if rng.random() < 0.5 else c1 * rng.uniform(0.4, 0.75)
    c, s = float(np.cos(angle)), float(np.sin(angle))
    u, v = g.x * c + g.y * s, -g.x * s + g.y * c
    # A sine's slope at a zero crossing is 2*pi/period per unit: scaling it so one pixel
    # spans the whole 0..1 ramp gives anti-aliased square waves.
    sharp = period / (2 * np.pi * g.px)
    if kind == "stripes":
        t = np.clip(0.5 + 0.5 * sharp * np.sin(2 * np.pi * u / period), 0, 1)
    elif kind == "checker":
        w = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        t = np.clip(0.5 + 0.5 * sharp * w, 0, 1)
    else:  # gradient
        t = np.clip((u - u.min()) / (u.max() - u.min() + 1e-6), 0, 1)
    return _lerp(c1, c2, np.broadcast_to(t, (g.size, g.size)))


def _shape(rng: np.random.Generator, g: _Grid, img: np.ndarray,
           light: tuple[float, float, float]) -> np.ndarray:
    """One random shape with its fill, shading and (sometimes) a drop shadow.

    ``light`` is a unit vector (x, y, towards the viewer) shared by the scene's shapes.
    """
    kind = rng.choice(["disc", "ellipse", "box", "triangle", "polygon"])
    cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.9), rng.uniform(0.06, 0.28)
    angle, ratio, n_sides = rng.uniform(0, np.pi), rng.uniform(0.35, 1.0), int(rng.integers(5, 9))

    def sd(ox=0.0, oy=0.0):
        if kind == "disc":
            return _sd_ellipse(g, cx + ox, cy + oy, r, r)
        if kind == "ellipse":
            return _sd_ellipse(g, cx + ox, cy + oy, r, r * ratio)
        if kind == "box":
            return _sd_box(g, cx + ox, cy + oy, r, r * ratio, angle)
        k = 3 if kind == "triangle" else n_sides
        return _sd_convex(g, _ngon(cx + ox, cy + oy, r, k, angle))

    if rng.random() < 0.5:
        img = _over(img, (0, 0, 0),
                    0.35 * _cover(sd(-light[0] * r * 0.25, -light[1] * r * 0.25), g.px, 4.0))
    base = _colour(rng)
    fill = rng.choice(["flat", "flat", "stripes", "checker", "gradient"])
    colour = (np.broadcast_to(base, img.shape) if fill == "flat" else
              _pattern(rng, g, base, r * rng.uniform(0.15, 0.6), rng.uniform(0, np.pi), fill))
    dx, dy = (g.x - cx) / r, (g.y - cy) / r
    if kind == "disc":  # a sphere lit from ``light``
        nz = np.sqrt(np.clip(1.0 - dx * dx - dy * dy, 0.0, 1.0))
        shade = 0.35 + 0.75 * np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0, 1)
    else:
        shade = np.clip(1.0 + 0.3 * (dx * light[0] + dy * light[1]), 0.6, 1.3)
    return _over(img, np.clip(colour * shade[..., None], 0, 1), _cover(sd(), g.px))


# --- scenes ---------------------------------------------------------------------------

_SKIES = {  # top, horizon: day, dusk, overcast, night
    "day": ((0.16, 0.38, 0.78), (0.70, 0.84, 0.95)),
    "dusk": ((0.22, 0.18, 0.45), (0.98, 0.60, 0.30)),
    "overcast": ((0.50, 0.54, 0.60), (0.80, 0.81, 0.82)),
    "night": ((0.02, 0.03, 0.12), (0.12, 0.14, 0.30)),
}
_GROUNDS = ((0.25, 0.50, 0.18), (0.45, 0.36, 0.22), (0.78, 0.70, 0.48), (0.42, 0.42, 0.45),
            (0.90, 0.92, 0.96), (0.15, 0.32, 0.20))


def _landscape(rng: np.random.Generator, g: _Grid) -> np.ndarray:
    sky = str(rng.choice(list(_SKIES)))
    top, bottom = (_jitter(rng, c) for c in _SKIES[sky])
    horizon = rng.uniform(0.3, 0.65)
    t = np.clip(g.y / horizon, 0, 1) ** rng.uniform(0.6, 1.6)
    img = np.array(_lerp(top, bottom, np.broadcast_to(t, (g.size, g.size))))

    sx, sy, sr = rng.uniform(0.1, 0.9), rng.uniform(0.08, horizon), rng.uniform(0.03, 0.09)
    sun = _jitter(rng, (0.95, 0.93, 0.85) if sky == "night" else (1.0, 0.85, 0.45))
    dist = np.sqrt((g.x - sx) ** 2 + (g.y - sy) ** 2)
    img = img + sun * (rng.uniform(0.1, 0.5) * np.exp(-(dist - sr) / (sr * 2.5))
                       * (dist > sr))[..., None]
    img = _over(img, sun, _cover(dist - sr, g.px))
    cloud = _jitter(rng, (0.35, 0.37, 0.42) if sky == "night" else (0.96, 0.96, 0.97))
    for _ in range(int(rng.integers(0, 5))):
        cx, cy, w = rng.uniform(0, 1), rng.uniform(0.05, horizon * 0.8), rng.uniform(.06, .18)
        sd = np.minimum.reduce([_sd_ellipse(g, cx + w * rng.uniform(-1, 1),
                                            cy + w * rng.uniform(-0.25, 0.1),
                                            w * rng.uniform(0.4, 0.8), w * rng.uniform(.2, .4))
                                for _ in range(int(rng.integers(3, 6)))])
        img = _over(img, cloud, rng.uniform(0.6, 0.95) * _cover(sd, g.px, soft=g.size / 20))

    n_layers = int(rng.integers(1, 4))
    water = rng.random() < 0.3
    for k in range(n_layers):
        near = (k + 1) / n_layers
        base = horizon + (0.05 + 0.25 * near) * (1 - horizon) * rng.uniform(0.3, 1.0)
        # Octaves: doubling frequency, shrinking amplitude, for ridges rather than saws.
        amps = rng.uniform(0.01, 0.08, 3) * (1.2 - 0.5 * near) * [1.0, 0.35, 0.12]
        freqs, phases = rng.uniform(0.5, 4.0, 3) * [1, 2, 4], rng.uniform(0, 2 * np.pi, 3)

        def ridge(x, b=base, a=amps, f=freqs, p=phases):
            """Ridge height at x (unit space, y down); also used to stand objects on it."""
            x = np.asarray(x, np.float32)[..., None]
            return (b - np.sum(a * np.sin(2 * np.pi * f * x + p), axis=-1)).astype(np.float32)

        y_ridge = ridge(g.x[0])[None, :]
        col = _jitter(rng, _GROUNDS[int(rng.integers(len(_GROUNDS)))], 0.08)
        col = col * (0.6 + 0.4 * near) + bottom * (1 - near) * 0.4  # haze
        depth = np.clip((g.y - y_ridge) / (1 - y_ridge + 1e-3), 0, 1)
        fill = _lerp(col, col * 0.55, depth)
        if k == n_layers - 1 and rng.random() < 0.4:  # striped fields / rock strata
            fill = fill * (0.9 + 0.1 * np.sin(2 * np.pi * (g.y - y_ridge) * rng.uniform(8, 20)
                                              ))[..., None]
        img = _over(img, fill, _cover(y_ridge - g.y, g.px))

    if water:
        level = rng.uniform(max(horizon, 0.55), 0.85)
        mirror = np.clip((2 * level - g.y) / horizon, 0, 1)  # the sky, upside down
        refl = _lerp(top, bottom, np.broadcast_to(mirror, (g.size, g.size))) * 0.7
        ripple = 1 + 0.08 * np.sin(2 * np.pi * g.y * rng.uniform(15, 35) + g.x * 3)
        img = _over(img, np.clip(refl * ripple[..., None] + _f32([0, 0.03, 0.08]), 0, 1),
                    _cover(level - g.y, g.px))
    else:  # nothing stands on water
        img = _ground_objects(rng, g, img, ridge)
    return img


def _ground_objects(rng: np.random.Generator, g: _Grid, img: np.ndarray, ridge) -> np.ndarray:
    """Trees and houses standing on the nearest ridge line."""
    for _ in range(int(rng.integers(0, 4))):
        x0, h = rng.uniform(0.05, 0.95), rng.uniform(0.08, 0.22)
        y0 = float(ridge(x0)) + 0.01
        if rng.random() < 0.6:  # tree: trunk and a crown
            trunk = _jitter(rng, (0.35, 0.24, 0.14))
            img = _over(img, trunk, _cover(_sd_box(g, x0, y0 - h * 0.25, h * 0.06, h * 0.25),
                                           g.px))
            leaf = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.6))
            if rng.random() < 0.5:
                pts = np.array([[x0 - h * 0.3, y0 - h * 0.35], [x0 + h * 0.3, y0 - h * 0.35],
                                [x0, y0 - h * 1.2]])
                sd = _sd_convex(g, pts)
            else:
                sd = _sd_ellipse(g, x0, y0 - h * 0.75, h * 0.35, h * 0.4)
            img = _over(img, leaf, _cover(sd, g.px))
        else:  # house: walls, a roof, a window
            w = h * rng.uniform(0.5, 0.9)
            img = _over(img, _colour(rng), _cover(_sd_box(g, x0, y0 - h * 0.3, w, h * 0.3),
                                                  g.px))
            roof = np.array([[x0 - w * 1.15, y0 - h * 0.6], [x0 + w * 1.15, y0 - h * 0.6],
                             [x0, y0 - h * 1.05]])
            img = _over(img, _jitter(rng, (0.55, 0.18, 0.12), 0.15),
                        _cover(_sd_convex(g, roof), g.px))
            img = _over(img, (0.95, 0.85, 0.45) if rng.random() < 0.5 else (0.15, 0.2, 0.3),
                        _cover(_sd_box(g, x0, y0 - h * 0.33, w * 0.25, h * 0.1), g.px))
    return img


def _still_life(rng: np.random.Generator, g: _Grid) -> np.ndarray:
    wall = _colour(rng) * rng.uniform(0.6, 1.0)
    kind = rng.choice(["flat", "stripes", "checker", "gradient"])
    img = (np.broadcast_to(wall, (g.size, g.size, 3)) if kind == "flat" else
           _pattern(rng, g, wall, rng.uniform(0.04, 0.2), rng.choice([0, np.pi / 2, np.pi / 4]),
                    kind))
    img = np.array(img, np.float32)
    if rng.random() < 0.7:
        floor_y = rng.uniform(0.5, 0.85)
        floor = _colour(rng) * rng.uniform(0.5, 0.9)
        depth = np.clip((g.y - floor_y) / (1 - floor_y), 0, 1)
        img = _over(img, _lerp(floor * 0.7, floor, np.broadcast_to(depth, (g.size, g.size))),
                    _cover(floor_y - g.y, g.px))
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.2), rng.uniform(0.5, 1.0)])
    light = tuple(float(v) for v in light / np.linalg.norm(light))
    for _ in range(int(rng.integers(2, 8))):
        img = _shape(rng, g, img, light)
    return img


def _finish(rng: np.random.Generator, g: _Grid, img: np.ndarray) -> np.ndarray:
    """Vignette, exposure and white balance, pixel noise: the camera's part."""
    d2 = (g.x - 0.5) ** 2 + (g.y - 0.5) ** 2
    img = img * (1.0 - rng.uniform(0.0, 0.8) * d2)[..., None]
    img = img * (rng.uniform(0.85, 1.15) * (1 + rng.uniform(-0.05, 0.05, 3))).astype(np.float32)
    sigma = rng.uniform(0.0, 0.035)
    img += np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    return img
