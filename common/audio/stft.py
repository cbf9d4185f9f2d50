"""Short-time Fourier transform in pure JAX, with librosa's semantics.

Waveforms are ``[..., N]`` (time last, any batch dims); spectrograms are channels-last,
``[..., frames, n_fft // 2 + 1]``. Everything here is ``jax.jit``/``jax.grad`` friendly:
``n_fft``, ``hop_length``, ``win_length``, ``window``, ``center``, ``pad_mode`` and
``length`` are static (they fix shapes), arrays are computed in float32.

Semantics follow ``librosa.stft`` / ``librosa.istft``: the window is
``scipy.signal.get_window(window, win_length, fftbins=True)`` (periodic) zero-padded to
``n_fft`` about the centre; ``center=True`` pads ``n_fft // 2`` samples on both sides
with ``pad_mode``; there are ``1 + (N_padded - n_fft) // hop_length`` frames; frame
``t`` is centred on sample ``t * hop`` (``center=True``) or starts there (``False``).

Valid lengths: a frame is *valid* when its centre sample lies inside the valid region of
its signal (``[0, L)`` for right padding, ``[N - L, N)`` for left padding); see
``frame_mask``. With right zero-padding the valid frames equal those of the unpadded
signal exactly for ``center=False``, and for ``center=True`` with ``pad_mode="constant"``
(its padding is zeros too). Left padding shifts the frame grid unless the pad is a
multiple of ``hop_length``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

WindowSpec = str | tuple
PaddingSide = Literal["right", "left"]
PAD_MODES = ("constant", "reflect")


# scipy.signal's general cosine windows by their coefficients, computed as scipy does
# (its Hamming is general_hamming(0.54): the second coefficient is 1 - 0.54, not 0.46).
COSINE_WINDOWS: dict[str, tuple[float, ...]] = {
    "hann": (0.5, 1.0 - 0.5),
    "hamming": (0.54, 1.0 - 0.54),
    "blackman": (0.42, 0.50, 0.08),
    "boxcar": (1.0,),
}


def periodic_cosine_window(coefs: tuple[float, ...], length: int) -> np.ndarray:
    """``scipy.signal.get_window(name, length, fftbins=True)`` for a general cosine
    window (``sum_k a_k cos(k x)``, x over [-pi, pi] on ``length + 1`` points, the last
    dropped), with the same float64 operations. Returns ``[length]``."""
    if length <= 1:  # scipy's length guard
        return np.ones(length)
    x = np.linspace(-np.pi, np.pi, length + 1)
    win = np.zeros(length + 1)
    for k, a in enumerate(coefs):
        win += a * np.cos(k * x)
    return win[:-1]


def get_window(window: WindowSpec, win_length: int, n_fft: int) -> np.ndarray:
    """librosa's analysis window: periodic ``window`` of ``win_length`` centred in ``n_fft``.

    Returns float64 numpy ``[n_fft]`` (a trace-time constant).
    """
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length={win_length} must be in (0, n_fft={n_fft}]")
    name = window[0] if isinstance(window, tuple) and len(window) == 1 else window
    if isinstance(name, str) and name in COSINE_WINDOWS:
        win = periodic_cosine_window(COSINE_WINDOWS[name], win_length)
    else:
        # Imported only here: scipy.signal's import costs ~3 s (it loads scipy.stats),
        # which every codec's first trace paid for the Hann window alone.
        import scipy.signal

        win = scipy.signal.get_window(window, win_length, fftbins=True).astype(np.float64)
    lpad = (n_fft - win_length) // 2  # librosa.util.pad_center puts the odd sample right
    return np.pad(win, (lpad, n_fft - win_length - lpad))


def num_frames(n_samples: int, n_fft: int, hop_length: int, center: bool = True) -> int:
    """Number of STFT frames for a signal of ``n_samples`` (a static Python int)."""
    padded = n_samples + 2 * (n_fft // 2) if center else n_samples
    if padded < n_fft:
        raise ValueError(f"signal of {n_samples} samples is shorter than n_fft={n_fft}")
    return 1 + (padded - n_fft) // hop_length


def frame_mask(
    lengths: jax.Array,
    n_samples: int,
    *,
    n_fft: int,
    hop_length: int,
    center: bool = True,
    padding_side: PaddingSide = "right",
) -> jax.Array:
    """Valid-frame mask: frame ``t`` is valid when its centre sample is a valid sample.

    lengths: int ``[...]`` valid samples per signal of a batch padded to ``n_samples``
    (for ``[B, C, N]`` audio pass ``[B, C]`` or ``[B, 1]``).
    Returns bool ``[..., frames]``, ``frames = num_frames(n_samples, ...)``. The
    centre of frame ``t`` is sample ``t * hop`` (``center=True``) or
    ``t * hop + n_fft // 2``; the valid region is ``[0, L)`` (right padding) or
    ``[n_samples - L, n_samples)`` (left padding).
    """
    n = num_frames(n_samples, n_fft, hop_length, center)
    centres = np.arange(n) * hop_length + (0 if center else n_fft // 2)
    lengths = jnp.asarray(lengths)[..., None]
    if padding_side == "right":
        return centres < lengths
    if padding_side == "left":
        return (centres >= n_samples - lengths) & (centres < n_samples)
    raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")


def frame_lengths(
    lengths: jax.Array,
    n_samples: int,
    *,
    n_fft: int,
    hop_length: int,
    center: bool = True,
    padding_side: PaddingSide = "right",
) -> jax.Array:
    """Number of valid frames per signal, int32 ``[...]`` (the count of ``frame_mask``)."""
    mask = frame_mask(
        lengths, n_samples, n_fft=n_fft, hop_length=hop_length, center=center,
        padding_side=padding_side,
    )
    return mask.sum(axis=-1, dtype=jnp.int32)


def _frame(x: jax.Array, n_fft: int, hop_length: int) -> jax.Array:
    """``[..., Np] -> [..., T, n_fft]`` overlapping frames."""
    n_frames = 1 + (x.shape[-1] - n_fft) // hop_length
    if n_fft % hop_length == 0:
        # Reshape into hop-sized blocks and concatenate r shifted views: no gather, so
        # the backward pass is a plain sum instead of a scatter (cheaper on TPU/GPU).
        r = n_fft // hop_length
        n_blocks = n_frames + r - 1
        blocks = x[..., : n_blocks * hop_length].reshape(*x.shape[:-1], n_blocks, hop_length)
        return jnp.concatenate([blocks[..., j : j + n_frames, :] for j in range(r)], axis=-1)
    idx = np.arange(n_frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
    return x[..., idx]


def _overlap_add(frames: jax.Array, hop_length: int) -> jax.Array:
    """``[..., T, n_fft] -> [..., n_fft + hop * (T - 1)]`` sum of frames placed every hop."""
    *batch, n_frames, n_fft = frames.shape
    out_len = n_fft + hop_length * (n_frames - 1)
    if n_fft % hop_length == 0:
        # Frame t's j-th hop-block lands in output block t + j: shift and sum r slabs.
        r = n_fft // hop_length
        blocks = frames.reshape(*batch, n_frames, r, hop_length)
        pad = [(0, 0)] * len(batch)
        out = sum(
            jnp.pad(blocks[..., j, :], [*pad, (j, r - 1 - j), (0, 0)]) for j in range(r)
        )
        return out.reshape(*batch, out_len)
    idx = np.arange(n_frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
    out = jnp.zeros((*batch, out_len), frames.dtype)
    return out.at[..., idx.reshape(-1)].add(frames.reshape(*batch, -1))


def stft(
    x: jax.Array,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    *,
    lengths: jax.Array | None = None,
    padding_side: PaddingSide = "right",
) -> jax.Array:
    """Complex STFT, as ``librosa.stft(...)`` but channels-last.

    x: ``[..., N]`` waveform. Returns complex64 ``[..., frames, n_fft // 2 + 1]``.
    ``hop_length`` defaults to ``win_length // 4``, ``win_length`` to ``n_fft``.
    If ``lengths`` (int, broadcastable to ``x.shape[:-1]``) is given, frames outside
    ``frame_mask(lengths, N, ..., padding_side=padding_side)`` are zeroed,
    so whatever fills the padding cannot leak into the features.
    """
    win_length = n_fft if win_length is None else win_length
    hop_length = win_length // 4 if hop_length is None else hop_length
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    x = jnp.asarray(x, jnp.float32)
    n_samples = x.shape[-1]
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = jnp.pad(x, pad, mode=pad_mode)
    elif n_samples < n_fft:
        raise ValueError(f"signal of {n_samples} samples is shorter than n_fft={n_fft}")
    win = jnp.asarray(get_window(window, win_length, n_fft), jnp.float32)
    spec = jnp.fft.rfft(_frame(x, n_fft, hop_length) * win, n=n_fft, axis=-1)
    if lengths is not None:
        mask = frame_mask(
            lengths, n_samples, n_fft=n_fft, hop_length=hop_length, center=center,
            padding_side=padding_side,
        )
        spec = jnp.where(mask[..., None], spec, 0)
    return spec


def window_sumsquare(
    window: WindowSpec, n_frames: int, n_fft: int, hop_length: int, win_length: int
) -> np.ndarray:
    """Sum of squared windows over ``n_frames`` hops (librosa.filters.window_sumsquare).

    Returns float64 numpy ``[n_fft + hop * (n_frames - 1)]``.
    """
    # Vectorised over frames (long signals have 1e5+ frames): the window's j-th
    # hop-sized segment lands in output block t + j for every frame t.
    r = -(-n_fft // hop_length)
    win_sq = get_window(window, win_length, n_fft) ** 2
    segments = np.pad(win_sq, (0, r * hop_length - n_fft)).reshape(r, hop_length)
    blocks = np.zeros((n_frames + r - 1, hop_length))
    for j in range(r):
        blocks[j : j + n_frames] += segments[j]
    return blocks.reshape(-1)[: n_fft + hop_length * (n_frames - 1)]


def istft(
    spec: jax.Array,
    n_fft: int | None = None,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    length: int | None = None,
) -> jax.Array:
    """Inverse STFT, as ``librosa.istft(...)`` for a channels-last spectrogram.

    spec: complex ``[..., frames, n_fft // 2 + 1]``. Returns float32 ``[..., N]`` with
    ``N = length`` if given, else ``n_fft + hop * (frames - 1)`` minus the centre padding.
    Overlap-added frames are divided by the window sum-square where it exceeds float32's
    ``tiny`` (elsewhere left as is, like librosa).
    """
    n_fft = 2 * (spec.shape[-1] - 1) if n_fft is None else n_fft
    win_length = n_fft if win_length is None else win_length
    hop_length = win_length // 4 if hop_length is None else hop_length
    n_frames = spec.shape[-2]
    start = n_fft // 2 if center else 0
    if length is not None:
        # Frames starting past the requested output cannot touch it: drop them (librosa too).
        n_frames = min(n_frames, -(-(length + 2 * start) // hop_length))
        spec = spec[..., :n_frames, :]
    win = jnp.asarray(get_window(window, win_length, n_fft), jnp.float32)
    frames = jnp.fft.irfft(spec.astype(jnp.complex64), n=n_fft, axis=-1) * win
    y = _overlap_add(frames, hop_length)
    wss = window_sumsquare(window, n_frames, n_fft, hop_length, win_length)
    inv = np.where(wss > np.finfo(np.float32).tiny, 1.0 / np.maximum(wss, 1e-300), 1.0)
    y = y * jnp.asarray(inv, jnp.float32)
    if length is None:
        return y[..., start : y.shape[-1] - start]
    y = y[..., start : start + length]
    if y.shape[-1] < length:
        y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y


def magnitude(spec: jax.Array, *, power: float = 1.0, eps: float = 0.0) -> jax.Array:
    """``(|spec|^2 + eps) ** (power / 2)`` in float32, same shape as ``spec``.

    With the default ``eps=0`` the value is exact (librosa parity); the gradient is
    made safe with a double ``where``: at bins that are exactly zero (silence) it is 0
    instead of NaN, elsewhere it is the true one (bounded by 1 for ``power=1``).
    ``eps > 0`` gives the smooth ``sqrt(|spec|^2 + eps)`` some losses prefer.
    """
    p = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    p = (p + eps).astype(jnp.float32)
    if power == 2.0:
        return p
    positive = p > 0
    safe = jnp.where(positive, p, 1.0)
    root = jnp.sqrt(safe) if power == 1.0 else safe ** (0.5 * power)
    return jnp.where(positive, root, 0.0)


def log_magnitude(
    spec: jax.Array, *, floor: float = 1e-5, power: float = 1.0, eps: float = 0.0
) -> jax.Array:
    """``log(max(magnitude(spec, power=power, eps=eps), floor))`` (natural log)."""
    return jnp.log(jnp.maximum(magnitude(spec, power=power, eps=eps), floor))
