"""Multi-resolution STFT features: magnitudes (and valid-frame masks) at several resolutions.

The spectral losses in ``common.losses`` compare these between a prediction and a
target; here only the features. Configs are frozen (hashable) dataclasses so a tuple
of them can be a static argument of a jitted function.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from common.audio.stft import PaddingSide, WindowSpec, frame_mask, magnitude, stft


@dataclass(frozen=True)
class STFTConfig:
    """One STFT resolution. ``win_length=None`` means ``n_fft``."""

    n_fft: int
    hop_length: int
    win_length: int | None = None

    def __post_init__(self) -> None:
        win = self.n_fft if self.win_length is None else self.win_length
        if not (0 < self.hop_length and 0 < win <= self.n_fft):
            raise ValueError(
                f"STFTConfig needs 0 < hop_length and 0 < win_length <= n_fft, got {self}"
            )

    @property
    def win(self) -> int:
        """The effective window length."""
        return self.n_fft if self.win_length is None else self.win_length


DEFAULT_RESOLUTIONS: tuple[STFTConfig, ...] = (
    STFTConfig(2048, 512),
    STFTConfig(1024, 256),
    STFTConfig(512, 128),
)


def geometric_resolutions(
    n: int = 3, max_n_fft: int = 2048, factor: int = 2, overlap: int = 4
) -> tuple[STFTConfig, ...]:
    """``n`` resolutions with ``n_fft = max_n_fft / factor**i`` and ``hop = n_fft / overlap``.

    ``geometric_resolutions(3, 2048)`` is ``DEFAULT_RESOLUTIONS``.
    """
    configs = []
    for i in range(n):
        n_fft = max_n_fft // factor**i
        if n_fft * factor**i != max_n_fft or n_fft % overlap or n_fft < overlap:
            raise ValueError(
                f"max_n_fft={max_n_fft} must divide by factor**{i} and then by "
                f"overlap={overlap}"
            )
        configs.append(STFTConfig(n_fft, n_fft // overlap))
    return tuple(configs)


def multi_resolution_magnitudes(
    x: jax.Array,
    resolutions: tuple[STFTConfig, ...] = DEFAULT_RESOLUTIONS,
    *,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 1.0,
    eps: float = 0.0,
    lengths: jax.Array | None = None,
    padding_side: PaddingSide = "right",
) -> tuple[tuple[jax.Array, jax.Array], ...]:
    """STFT magnitudes and valid-frame masks at every resolution.

    x: ``[..., N]`` waveform; lengths: optional int ``[...]`` valid samples.
    Returns one ``(mag, mask)`` per resolution: ``mag`` float32
    ``[..., frames_i, n_fft_i // 2 + 1]`` (``magnitude(stft(x), power, eps)``; invalid
    frames hold the magnitude of silence), ``mask`` bool ``[..., frames_i]`` (all True
    without ``lengths``).
    """
    x = jnp.asarray(x, jnp.float32)
    out = []
    for cfg in resolutions:
        spec = stft(
            x, cfg.n_fft, cfg.hop_length, cfg.win, window, center, pad_mode,
            lengths=lengths, padding_side=padding_side,
        )
        if lengths is None:
            mask = jnp.ones(spec.shape[:-1], bool)
        else:
            mask = frame_mask(
                lengths, x.shape[-1], n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                center=center, padding_side=padding_side,
            )
            mask = jnp.broadcast_to(mask, spec.shape[:-1])
        out.append((magnitude(spec, power=power, eps=eps), mask))
    return tuple(out)
