"""Inverse STFT of a predicted spectrogram with a valid-frame mask, as a vocoder's last
step: Vocos's ``ISTFT`` (``vocos/spectral_ops.py``) with its two paddings, in pure JAX.

``spec [..., T, n_fft // 2 + 1]`` complex -> ``wav [..., L]``:

* ``padding="same"`` (Vocos's default, analogous to a CNN's "same"): the overlap-added
  frames are trimmed by ``(n_fft - hop) // 2`` on both sides, ``L = T * hop`` (``n_fft -
  hop`` must be even). Frame ``t`` is centred on output sample ``t * hop + hop / 2``.
* ``padding="center"`` (``torch.istft(center=True)``, librosa's ``istft``): trimmed by
  ``n_fft // 2``, ``L = (T - 1) * hop``; frame ``t`` is centred on sample ``t * hop``.

The window is a periodic Hann of ``n_fft`` (Vocos: ``win_length = n_fft``), and the sum
is divided by the overlap-added squared window (the window envelope).

Masks. ``valid [..., T]`` (bool; None: all valid) marks real frames. Invalid frames are
zeroed before the overlap-add *and left out of the envelope*, so the output on the valid
samples is what the valid frames alone give: a left-padded row equals its unpadded self
there, whatever the padding frames held (with the full envelope, the edge samples of a
padded row would be divided by the padding frames' windows too, and differ). Samples
no valid frame reaches (envelope below ``ENVELOPE_FLOOR``, Vocos's NOLA bound) are 0.
``sample_mask`` gives the valid output samples: sample ``s`` is valid when frame
``s // hop`` is.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from common.audio.stft import _overlap_add, get_window

IstftPadding = Literal["same", "center"]
ISTFT_PADDINGS = ("same", "center")
ENVELOPE_FLOOR = 1e-11  # Vocos asserts the envelope exceeds this on every kept sample


def output_length(n_frames: int, n_fft: int, hop_length: int,
                  padding: IstftPadding = "same") -> int:
    """Samples ``frame_istft`` returns for ``n_frames`` frames."""
    return n_frames * hop_length if padding == "same" else (n_frames - 1) * hop_length


def _trim(n_fft: int, hop_length: int, padding: str) -> int:
    if padding not in ISTFT_PADDINGS:
        raise ValueError(f"padding must be one of {ISTFT_PADDINGS}, got {padding!r}")
    if padding == "center":
        return n_fft // 2
    if (n_fft - hop_length) % 2:
        raise ValueError(f"padding 'same' needs n_fft - hop_length even, got n_fft={n_fft}, "
                         f"hop_length={hop_length}")
    return (n_fft - hop_length) // 2


def frame_istft(spec: jax.Array, valid: jax.Array | None = None, *, n_fft: int,
                hop_length: int, padding: IstftPadding = "same") -> jax.Array:
    """``spec [..., T, n_fft // 2 + 1]`` complex, ``valid [..., T]`` bool or None ->
    float32 ``[..., output_length(T)]`` (module docstring)."""
    if not 0 < hop_length <= n_fft:
        raise ValueError(f"hop_length must be in (0, n_fft={n_fft}], got {hop_length}")
    start = _trim(n_fft, hop_length, padding)
    n_frames = spec.shape[-2]
    length = output_length(n_frames, n_fft, hop_length, padding)
    win = jnp.asarray(get_window("hann", n_fft, n_fft), jnp.float32)
    frames = jnp.fft.irfft(spec.astype(jnp.complex64), n=n_fft, axis=-1) * win
    weights = jnp.broadcast_to(jnp.square(win), frames.shape[-2:])
    if valid is not None:
        keep = jnp.asarray(valid, bool)[..., None]
        frames = jnp.where(keep, frames, 0.0)
        weights = jnp.where(keep, weights, 0.0)
    y = _overlap_add(frames, hop_length)[..., start:start + length]
    env = _overlap_add(weights, hop_length)[..., start:start + length]
    ok = env > ENVELOPE_FLOOR
    return jnp.where(ok, y / jnp.where(ok, env, 1.0), 0.0)


def sample_mask(valid: jax.Array, hop_length: int, padding: IstftPadding = "same"
                ) -> jax.Array:
    """``valid [..., T]`` frames -> bool ``[..., output_length(T)]``: sample ``s`` is
    valid when frame ``s // hop`` is."""
    n_frames = valid.shape[-1]
    length = output_length(n_frames, 0, hop_length, padding)
    return jnp.repeat(jnp.asarray(valid, bool), hop_length, axis=-1)[..., :length]
