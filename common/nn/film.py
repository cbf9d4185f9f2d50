"""Feature-wise linear modulation (FiLM, Perez et al. 2018), identity at initialisation.

``y = x * (1 + gamma(cond)) + beta(cond)`` with ``gamma, beta`` from one Linear whose
weights and bias start at zero: a freshly inserted FiLM layer leaves the network's
function unchanged, and the gradient still reaches its kernel (it is proportional to
``cond``), so the conditioning is learned from there.
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
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.cond_dim = cond_dim
        self.dim = dim
        self.dtype = dtype
        zeros = nnx.initializers.zeros_init()
        # Kernel [cond_dim, 2, dim]: (gamma, beta) is its own unsharded axis.
        self.proj = Linear(cond_dim, (2, dim), axes=(ax.COND, None, ax.EMBED), use_bias=True,
                           kernel_init=zeros, bias_init=zeros, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"FiLM(dim={self.dim}) got x with last dimension {x.shape[-1]}")
        dt = ax.compute_dtype(x, self.dtype)
        gb = self.proj(cond.astype(dt))  # [B, ..., 2, dim]
        gamma, beta = broadcast_cond(gb[..., 0, :], x), broadcast_cond(gb[..., 1, :], x)
        return x.astype(dt) * (1 + gamma) + beta
