"""Feature-wise linear modulation (FiLM, Perez et al. 2018), identity at initialisation.

``y = x * (1 + gamma(cond)) + beta(cond)`` with ``gamma, beta`` from one Linear whose
weights and bias start at zero: a freshly inserted FiLM layer leaves the network's
function unchanged, and the gradient still reaches its kernel (it is proportional to
``cond``), so the conditioning is learned from there.

Options: ``hidden > 0`` puts a SiLU MLP layer before that Linear (a speaker embedding's
scale and shift are not linear in it); ``bound`` squashes both through
``bound * tanh(. / bound)`` so no conditioning vector can flip or blow up a channel
(``|gamma|, |beta| < bound``; the identity at initialisation is kept, tanh(0) = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from common.nn.norms import broadcast_cond


class FiLM(nnx.Module):
    """Conditioning by per-channel scale and shift.

    Shapes: ``x [B, ..., dim]`` with ``cond [B, cond_dim]`` (one vector per sequence,
    broadcast over the middle axes, e.g. time) or ``cond [B, T, cond_dim]`` (per frame)
    -> ``[B, ..., dim]`` in ``dtype`` (else x's dtype).
    """

    def __init__(
        self,
        cond_dim: int,
        dim: int,
        *,
        hidden: int = 0,
        bound: float | None = None,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.cond_dim = cond_dim
        self.dim = dim
        self.dtype = dtype
        self.bound = bound
        zeros = nnx.initializers.zeros_init()
        self.hidden = (Linear(cond_dim, hidden, axes=(ax.COND, ax.MLP), use_bias=True,
                              dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                       if hidden else None)
        # Kernel [in, 2, dim]: (gamma, beta) is its own unsharded axis.
        self.proj = Linear(hidden or cond_dim, (2, dim),
                           axes=(ax.MLP if hidden else ax.COND, None, ax.EMBED),
                           use_bias=True, kernel_init=zeros, bias_init=zeros, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"FiLM(dim={self.dim}) got x with last dimension {x.shape[-1]}")
        dt = ax.compute_dtype(x, self.dtype)
        c = cond.astype(dt)
        if self.hidden is not None:
            c = jax.nn.silu(self.hidden(c))
        gb = self.proj(c)  # [B, ..., 2, dim]
        if self.bound is not None:
            gb = self.bound * jnp.tanh(gb / self.bound)
        gamma, beta = broadcast_cond(gb[..., 0, :], x), broadcast_cond(gb[..., 1, :], x)
        return x.astype(dt) * (1 + gamma) + beta
