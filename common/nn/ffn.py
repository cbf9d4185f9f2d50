"""Position-wise feed-forward block (MLP) of transformers, gated or plain.

Gated (``gated=True``, GLU family, Shazeer 2020):

    y = wo( act(wi_0 x) * wi_1 x )      SwiGLU with "silu", GeGLU with "gelu"/"gelu_tanh"

Plain (``gated=False``): ``y = wo( act(wi x) )``.

Parameter names follow T5X / Gemma (``wi_0``, ``wi_1``, ``wo``; ``wi`` when not gated)
so checkpoints from those code bases map one to one. Kernels carry logical axes
``(embed, mlp)`` for the input projections and ``(mlp, embed)`` for the output one, so
the hidden axis is what tensor parallelism splits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.activations import ACTIVATIONS, get_activation
from common.nn.linear import Linear


class FeedForward(nnx.Module):
    """Gated or plain MLP with optional dropout on the hidden activations.

    Dropout (rate ``dropout``) sits on the hidden layer, after the activation / gating,
    as in T5 and Gemma. It follows nnx's usual switch: pass ``deterministic=True`` to
    ``__call__``, or use ``model.eval()`` / ``nnx.view(model, deterministic=True)``;
    its key comes from the ``dropout`` stream of the ``rngs`` given at construction
    (or of ``rngs`` passed to the call).

    Shapes: ``x [..., dim] -> [..., dim]`` in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        activation: str = "silu",
        gated: bool = True,
        use_bias: bool = False,
        dropout: float = 0.0,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"FeedForward activation must be one of {tuple(ACTIVATIONS)}, "
                             f"got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FeedForward dropout must be in [0, 1), got {dropout}")
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.activation = activation
        self.gated = gated
        self.dtype = dtype
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        up = dict(axes=(ax.EMBED, ax.MLP), **kw)
        if gated:
            self.wi_0 = Linear(dim, hidden_dim, **up)
            self.wi_1 = Linear(dim, hidden_dim, **up)
        else:
            self.wi = Linear(dim, hidden_dim, **up)
        self.wo = Linear(hidden_dim, dim, axes=(ax.MLP, ax.EMBED), **kw)
        # No rng state is carried when there is nothing to drop.
        self.dropout = nnx.Dropout(dropout, rngs=rngs if dropout > 0 else None)

    def __call__(
        self,
        x: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        dt = ax.compute_dtype(x, self.dtype)
        x = x.astype(dt)
        act = get_activation(self.activation)
        if self.gated:
            h = act(self.wi_0(x)) * self.wi_1(x)
        else:
            h = act(self.wi(x))
        h = self.dropout(h, deterministic=deterministic, rngs=rngs)
        return self.wo(h)
