"""Pre-norm transformer blocks and layer stacks.

A block is ``x + attn(norm(x))``, optionally ``x + cross_attn(norm(x), context)``, then
``x + ffn(norm(x))``; with ``post_norm`` each sub-layer's output is normalised again
before the residual add (Gemma 2/3 "sandwich" norms).

A stack creates its layers with ``nnx.vmap`` (parameters stacked on a leading
``layers`` axis) and applies them with ``nnx.scan``, so compile time does not grow with
depth; ``remat`` rematerialises each layer in the backward pass. ``scan_layers=False``
keeps a Python list of layers instead (handy for weight import and debugging).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.attention import Attention, Implementation, KVCache
from common.nn.ffn import FeedForward
from common.nn.norms import LayerNorm, RMSNorm
from common.nn.positional import RoPEConfig

RematPolicy = Literal["none", "full", "dots", "dots_no_batch"]
_REMAT_POLICIES: dict[str, object] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Static description of a transformer stack (see module docstring).

    ``mlp_dim`` defaults to 4 * dim; ``head_dim`` to dim // num_heads; ``num_kv_heads``
    to num_heads. ``dtype`` is the compute dtype (e.g. "bfloat16"); parameters are
    kept in ``param_dtype``.
    """

    dim: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    mlp_dim: int | None = None
    activation: str = "silu"
    gated: bool = True
    norm: Literal["rms", "layer"] = "rms"
    norm_eps: float = 1e-6
    zero_centered_norm: bool = False
    post_norm: bool = False
    final_norm: bool = True
    causal: bool = False
    window: int | None = None
    rope: RoPEConfig | None = dataclasses.field(default_factory=RoPEConfig)
    alibi: bool = False
    softcap: float | None = None
    query_pre_attn_scalar: float | None = None
    qk_norm: bool = False
    use_bias: bool = False
    cross_attention: bool = False
    context_dim: int | None = None
    dropout: float = 0.0
    remat: RematPolicy = "none"
    scan_layers: bool = True
    attention_impl: Implementation = "auto"
    dtype: str | None = None
    param_dtype: str = "float32"

    def __post_init__(self):
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"TransformerConfig.norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.remat not in ("none", *_REMAT_POLICIES):
            raise ValueError(f"TransformerConfig.remat must be one of "
                             f"{('none', *_REMAT_POLICIES)}, got {self.remat!r}")
        if self.num_layers < 1:
            raise ValueError(f"TransformerConfig.num_layers must be >= 1, got {self.num_layers}")
        if self.dim % self.num_heads and self.head_dim is None:
            raise ValueError(f"TransformerConfig.dim={self.dim} is not divisible by "
                             f"num_heads={self.num_heads}; set head_dim")


def make_norm(cfg: TransformerConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    kw = dict(eps=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    if cfg.norm == "rms":
        return RMSNorm(cfg.dim, zero_centered=cfg.zero_centered_norm, **kw)
    return LayerNorm(cfg.dim, **kw)


class TransformerBlock(nnx.Module):
    """One pre-norm block. Shapes: ``x [B, T, dim]`` -> ``[B, T, dim]``."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        attn_kw = dict(
            num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, rope=cfg.rope,
            alibi=cfg.alibi, softcap=cfg.softcap, query_pre_attn_scalar=cfg.query_pre_attn_scalar,
            qk_norm=cfg.qk_norm, use_bias=cfg.use_bias, implementation=cfg.attention_impl,
            dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        maybe_post = lambda: make_norm(cfg, rngs=rngs) if cfg.post_norm else None
        self.attn_norm = make_norm(cfg, rngs=rngs)
        self.attn = Attention(cfg.dim, cfg.num_heads, causal=cfg.causal, window=cfg.window,
                              **attn_kw)
        self.attn_post_norm = maybe_post()
        if cfg.cross_attention:
            self.cross_norm = make_norm(cfg, rngs=rngs)
            self.cross_attn = Attention(cfg.dim, cfg.num_heads, context_dim=cfg.context_dim,
                                        **attn_kw)
            self.cross_post_norm = maybe_post()
        else:
            self.cross_norm = self.cross_attn = self.cross_post_norm = None
        self.ffn_norm = make_norm(cfg, rngs=rngs)
        self.ffn = FeedForward(cfg.dim, cfg.mlp_dim or 4 * cfg.dim, activation=cfg.activation,
                               gated=cfg.gated, use_bias=cfg.use_bias, dtype=cfg.dtype,
                               param_dtype=cfg.param_dtype, rngs=rngs)
        self.ffn_post_norm = maybe_post()
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

    def _residual(self, x: jax.Array, y: jax.Array, post: nnx.Module | None) -> jax.Array:
        if post is not None:
            y = post(y)
        return x + self.dropout(y).astype(x.dtype)

    def __call__(
        self,
        x: jax.Array,
        *,
        positions: jax.Array | None = None,
        valid: jax.Array | None = None,
        context: jax.Array | KVCache | None = None,
        context_positions: jax.Array | None = None,
        context_valid: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Returns ``(x, cache)``; ``cache`` is the updated self-attention cache or None."""
        h = self.attn(self.attn_norm(x), positions=positions, valid=valid, cache=cache)
        if cache is not None:
            h, cache = h
        x = self._residual(x, h, self.attn_post_norm)
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("this block has cross-attention: pass a context")
            h = self.cross_attn(self.cross_norm(x), positions=positions, valid=valid,
                                context=context, context_positions=context_positions,
                                context_valid=context_valid)
            x = self._residual(x, h, self.cross_post_norm)
        x = self._residual(x, self.ffn(self.ffn_norm(x)), self.ffn_post_norm)
        return x, cache


class TransformerStack(nnx.Module):
    """``num_layers`` blocks and an optional final norm.

    Shapes: ``x [B, T, dim]`` -> ``[B, T, dim]``. With ``cache`` (from ``init_cache``,
    stacked ``[L, ...]`` when layers are scanned, a list otherwise) returns
    ``(x, cache)``.
    """

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        if cfg.scan_layers:
            @nnx.split_rngs(splits=cfg.num_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0,
                      transform_metadata={nnx.PARTITION_NAME: ax.LAYERS})
            def create(rngs: nnx.Rngs) -> TransformerBlock:
                return TransformerBlock(cfg, rngs=rngs)

            self.layers = create(rngs)
        else:
            self.layers = nnx.List([TransformerBlock(cfg, rngs=rngs)
                                    for _ in range(cfg.num_layers)])
        self.final_norm = make_norm(cfg, rngs=rngs) if cfg.final_norm else None

    def init_cache(self, batch: int, max_len: int, dtype: jnp.dtype | None = None):
        """Empty self-attention caches for every layer."""
        cfg = self.cfg
        one = KVCache.empty(batch, max_len, cfg.num_kv_heads or cfg.num_heads,
                            cfg.head_dim or cfg.dim // cfg.num_heads,
                            dtype or cfg.dtype or jnp.float32)
        if cfg.scan_layers:
            return jax.tree.map(lambda a: jnp.broadcast_to(a, (cfg.num_layers, *a.shape)), one)
        return [one] * cfg.num_layers

    def __call__(
        self,
        x: jax.Array,
        *,
        positions: jax.Array | None = None,
        valid: jax.Array | None = None,
        context: jax.Array | None = None,
        context_positions: jax.Array | None = None,
        context_valid: jax.Array | None = None,
        cache: KVCache | list[KVCache] | None = None,
    ) -> jax.Array | tuple[jax.Array, KVCache | list[KVCache]]:
        cfg = self.cfg
        kw = dict(positions=positions, valid=valid, context=context,
                  context_positions=context_positions, context_valid=context_valid)

        def apply(block: TransformerBlock, h: jax.Array, layer_cache: KVCache | None):
            return block(h, cache=layer_cache, **kw)

        if cfg.remat != "none":
            apply = nnx.remat(apply, policy=_REMAT_POLICIES[cfg.remat])

        if cfg.scan_layers:
            @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=(nnx.Carry, 0),
                      transform_metadata={nnx.PARTITION_NAME: ax.LAYERS})
            def run(block: TransformerBlock, h: jax.Array, layer_cache: KVCache | None):
                return apply(block, h, layer_cache)

            x, new_cache = run(self.layers, x, cache)
        else:
            caches = cache if cache is not None else [None] * cfg.num_layers
            new_cache = []
            for block, layer_cache in zip(self.layers, caches, strict=True):
                x, c = apply(block, x, layer_cache)
                new_cache.append(c)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x if cache is None else (x, new_cache)
