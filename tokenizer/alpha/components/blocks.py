"""The alpha codec's down and up blocks (DAC-style, channels last): the shared
``tokenizer.codec.residual.ResidualUnit`` around a strided or transposed conv.
Every block takes the valid mask of its rate and zeros padded frames on the way out
(``tokenizer.codec.masks``), so padding never leaks into valid frames.

In causal mode every block also streams: ``init_stream(batch)`` gives the state before
the first chunk (the convs' left contexts and transposed-conv tails) and
``stream(x, state)`` runs one chunk, so that chunks concatenated equal the offline call
on the whole unpadded signal.
"""

from __future__ import annotations

import jax
from flax import nnx

from common.nn.activations import Snake
from common.nn.conv import ConvTranspose
from tokenizer.codec.masks import apply_mask
from tokenizer.codec.residual import ResidualUnit, padded_conv


def _units_init(units, batch: int) -> list:
    return [u.init_stream(batch) for u in units]


def _units_stream(units, x: jax.Array, states: list) -> tuple[jax.Array, list]:
    out = []
    for unit, st in zip(units, states, strict=True):
        x, st = unit.stream(x, st)
        out.append(st)
    return x, out


class DownBlock(nnx.Module):
    """Residual units at ``cin`` channels, then a strided conv (kernel ``2 * stride``) to
    ``cout``: ``[B, T, cin] -> [B, T / stride, cout]`` (T a multiple of stride)."""

    def __init__(self, cin: int, cout: int, stride: int, *, dilations=(1, 3, 9),
                 causal: bool = False, weight_norm: bool = True, kernel_init=None,
                 dtype=None, rngs: nnx.Rngs):
        kw = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.units = nnx.List([ResidualUnit(cin, d, causal=causal, weight_norm=weight_norm,
                                            dtype=dtype, rngs=rngs, **kw) for d in dilations])
        self.act = Snake(cin, dtype=dtype, rngs=rngs)
        self.down = padded_conv(cin, cout, 2 * stride, stride=stride, causal=causal,
                                weight_norm=weight_norm, dtype=dtype, rngs=rngs, **kw)

    def __call__(self, x: jax.Array, valid: jax.Array | None,
                 valid_out: jax.Array | None) -> jax.Array:
        for unit in self.units:
            x = unit(x, valid)
        return apply_mask(self.down(self.act(x)), valid_out)

    def init_stream(self, batch: int) -> dict:
        return {"units": _units_init(self.units, batch), "down": self.down.init_stream(batch)}

    def stream(self, x: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        x, units = _units_stream(self.units, x, state["units"])
        y, down = self.down.stream(self.act(x), state["down"])
        return y, {"units": units, "down": down}


class UpBlock(nnx.Module):
    """A transposed conv (kernel ``2 * stride``) from ``cin`` to ``cout`` channels, then
    residual units: ``[B, T, cin] -> [B, T * stride, cout]``."""

    def __init__(self, cin: int, cout: int, stride: int, *, dilations=(1, 3, 9),
                 causal: bool = False, weight_norm: bool = True, kernel_init=None,
                 dtype=None, rngs: nnx.Rngs):
        kw = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.act = Snake(cin, dtype=dtype, rngs=rngs)
        self.up = ConvTranspose(cin, cout, 2 * stride, stride=stride,
                                padding="causal" if causal else "same",
                                weight_norm=weight_norm, dtype=dtype, rngs=rngs, **kw)
        self.units = nnx.List([ResidualUnit(cout, d, causal=causal, weight_norm=weight_norm,
                                            dtype=dtype, rngs=rngs, **kw) for d in dilations])

    def __call__(self, x: jax.Array, valid_out: jax.Array | None) -> jax.Array:
        x = apply_mask(self.up(self.act(x)), valid_out)
        for unit in self.units:
            x = unit(x, valid_out)
        return x

    def init_stream(self, batch: int) -> dict:
        return {"up": self.up.init_stream(batch), "units": _units_init(self.units, batch)}

    def stream(self, x: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        x, up = self.up.stream(self.act(x), state["up"])
        x, units = _units_stream(self.units, x, state["units"])
        return x, {"up": up, "units": units}
