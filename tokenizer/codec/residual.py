"""The DAC residual unit both codecs build their conv stacks from (channels last).

``ResidualUnit``: Snake -> dilated conv (kernel 7) -> Snake -> 1x1 conv, plus the input.
Dilations 1, 3, 9 in sequence give a receptive field of 55 samples per block at its rate.
It takes the valid mask of its rate and zeros padded frames on the way out
(``tokenizer.codec.masks``), so padding never leaks into valid frames.

In causal mode it also streams: ``init_stream(batch)`` gives the state before the first
chunk (the convs' left contexts) and ``stream(x, state)`` runs one chunk, so that chunks
concatenated equal the offline call on the whole unpadded signal.
"""

from __future__ import annotations

import jax
from flax import nnx

from common.nn.activations import Snake
from common.nn.conv import Conv
from tokenizer.codec.masks import apply_mask

# PyTorch's default conv init (kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))), which
# DAC- and SNAC-style stacks train from. lecun_normal's 3x larger variance saturates the
# tanh output of a fresh deep stack (the alpha decoder's output had std 0.9, clipped at
# +-1, on -20 dBFS input), and the mel loss of a saturated noise barely moves it.
TORCH_KERNEL_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def padded_conv(cin: int, cout: int, k: int, *, causal: bool, weight_norm: bool,
                rngs: nnx.Rngs, **kw) -> Conv:
    """A conv padded causally (left only) or centred ("same"): ``[B, T, cin] -> [B, T /
    stride, cout]``."""
    return Conv(cin, cout, k, padding="causal" if causal else "same",
                weight_norm=weight_norm, rngs=rngs, **kw)


class ResidualUnit(nnx.Module):
    """``x [B, T, C] -> [B, T, C]``. ``groups`` splits the dilated conv (``groups=C``:
    depthwise, as in SNAC); the 1x1 conv always mixes all channels."""

    def __init__(self, channels: int, dilation: int, *, kernel_size: int = 7,
                 groups: int = 1, causal: bool = False, weight_norm: bool = True,
                 kernel_init=None, dtype=None, rngs: nnx.Rngs):
        kw = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.act1 = Snake(channels, dtype=dtype, rngs=rngs)
        self.conv1 = padded_conv(channels, channels, kernel_size, dilation=dilation,
                                 groups=groups, causal=causal, weight_norm=weight_norm,
                                 dtype=dtype, rngs=rngs, **kw)
        self.act2 = Snake(channels, dtype=dtype, rngs=rngs)
        self.conv2 = padded_conv(channels, channels, 1, causal=causal,
                                 weight_norm=weight_norm, dtype=dtype, rngs=rngs, **kw)

    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        """``valid [B, T]`` (None: all valid) zeros the output on padded frames."""
        y = self.conv2(self.act2(self.conv1(self.act1(x))))
        return apply_mask(x + y, valid)

    def init_stream(self, batch: int) -> dict:
        return {"conv1": self.conv1.init_stream(batch), "conv2": self.conv2.init_stream(batch)}

    def stream(self, x: jax.Array, state: dict) -> tuple[jax.Array, dict]:
        """One chunk ``x [B, T_chunk, C]`` -> ``(y [B, T_chunk, C], next state)``."""
        h, s1 = self.conv1.stream(self.act1(x), state["conv1"])
        y, s2 = self.conv2.stream(self.act2(h), state["conv2"])
        return x + y, {"conv1": s1, "conv2": s2}
