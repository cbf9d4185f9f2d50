"""Activations: Snake (periodic, for waveform models) and the named pointwise table.

Snake (Ziyin et al. 2020, used by BigVGAN / DAC / SNAC) is

    snake(x) = x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2

with one learnable ``alpha`` per channel. Channels are the last axis (``[..., C]``).

Precision: the reciprocal ``1 / (alpha + eps)`` is formed in float32 from the float32
parameter and only then cast to the compute dtype, so a bf16 compute dtype never
rounds ``alpha + 1e-9`` before dividing; it is clipped to the compute dtype's largest
finite value so a float16 compute cannot overflow to ``inf`` (``inf * 0 = nan`` when
``alpha == 0``). The elementwise part then runs in the compute dtype (bf16 when asked):
``sin`` of bf16 is accurate to ~3 significant digits, which is what bf16 compute means.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax

SNAKE_EPS = 1e-9


def _stable_reciprocal(alpha: jax.Array, dtype: jnp.dtype, eps: float) -> jax.Array:
    inv = 1.0 / (alpha.astype(jnp.float32) + eps)
    big = float(jnp.finfo(dtype).max)
    return jnp.clip(inv, -big, big).astype(dtype)


def snake(x: jax.Array, alpha: jax.Array, *, eps: float = SNAKE_EPS) -> jax.Array:
    """``x + 1/(alpha + eps) * sin(alpha x)^2``; ``alpha`` broadcasts against ``x``.

    Shapes: ``x [..., C]``, ``alpha [C]`` (or any shape broadcastable to x) -> ``[..., C]``
    in x's dtype.
    """
    dt = x.dtype
    a = jnp.asarray(alpha)
    return x + _stable_reciprocal(a, dt, eps) * jnp.sin(a.astype(dt) * x) ** 2


class Snake(nnx.Module):
    """Snake with a learnable per-channel frequency ``alpha``.

    ``log_scale=True`` is the BigVGAN parametrisation: the stored parameter is
    ``log(alpha)`` (init 0, i.e. alpha = 1) and ``alpha = exp(param)``, which keeps alpha
    positive and makes its updates multiplicative. Either way the parameter is named
    ``alpha`` so PyTorch checkpoints (``alpha`` of shape ``[1, C, 1]``) map by reshaping.

    Shapes: ``x [..., C] -> [..., C]`` in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        channels: int,
        *,
        log_scale: bool = False,
        alpha_init: float = 1.0,
        axis_name: str | None = ax.CONV_OUT,
        eps: float = SNAKE_EPS,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.channels = channels
        self.log_scale = log_scale
        self.eps = eps
        self.dtype = dtype
        init = math.log(alpha_init) if log_scale else alpha_init
        self.alpha = ax.param(rngs, nnx.initializers.constant(init), (channels,),
                              (axis_name,), param_dtype)

    def effective_alpha(self) -> jax.Array:
        """``alpha`` as the formula uses it (``exp`` of the parameter when log-scaled)."""
        a = self.alpha[...].astype(jnp.float32)
        return jnp.exp(a) if self.log_scale else a

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.channels:
            raise ValueError(f"Snake({self.channels}) got input with {x.shape[-1]} channels")
        dt = ax.compute_dtype(x, self.dtype)
        return snake(x.astype(dt), self.effective_alpha(), eps=self.eps)


# Pointwise activations by config name. "gelu" is the exact erf form (PyTorch's
# nn.GELU() default); "gelu_tanh" is the tanh approximation (GPT-2, T5 "gelu_new",
# Gemma's GeGLU).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The pointwise activation called ``name`` (one of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {tuple(ACTIVATIONS)}") from None
