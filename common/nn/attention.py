"""Multi-head attention: MHA / GQA / MQA, self- and cross-attention, RoPE or ALiBi,
Gemma-style soft-capping and ``query_pre_attn_scalar``, and a functional KV cache.

Two kernels compute the same thing:
  * ``reference_attention``: plain einsums with a float32 softmax. It supports every
    feature (including logit soft-capping) and is the numerical reference.
  * ``jax.nn.dot_product_attention``: XLA's fused path, or cuDNN flash attention on
    GPUs for bf16/f16 inputs. Used whenever no soft-capping is asked for.

Masks come from ``common.nn.masks.make_attention_mask`` (True = attend).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from common.nn.masks import make_attention_mask
from common.nn.norms import RMSNorm
from common.nn.positional import RoPEConfig, alibi_bias, apply_rope

log = logging.getLogger(__name__)

Implementation = Literal["auto", "reference", "xla", "cudnn"]
_IMPLEMENTATIONS = ("auto", "reference", "xla", "cudnn")


# ---------------------------------------------------------------------------------------
# Kernels


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float,
    softcap: float | None = None,
) -> jax.Array:
    """Scaled dot-product attention with grouped KV heads, in plain jnp.

    Args:
      q: ``[B, T, H, D]``; k, v: ``[B, S, K, D]`` with H a multiple of K (query head h
        uses KV head ``h // (H // K)``).
      mask: bool, broadcastable to ``[B, H, T, S]``; True = attend.
      bias: float, broadcastable to ``[B, H, T, S]``, added after soft-capping.
      scale: multiplies the logits.
      softcap: if set, logits become ``softcap * tanh(logits / softcap)``.

    Returns:
      ``[B, T, H, D]`` in q's dtype. Logits and softmax are float32.
    """
    b, t, h, d = q.shape
    kh = k.shape[2]
    if h % kh:
        raise ValueError(f"query heads {h} must be a multiple of kv heads {kh}")
    qg = q.reshape(b, t, kh, h // kh, d)
    logits = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)
    logits = logits.reshape(b, h, t, -1) * scale
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        # A finite floor keeps fully-masked rows (padding queries) NaN-free.
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    probs = probs.reshape(b, kh, h // kh, t, -1)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
    return out.reshape(b, t, h, d)


def _cudnn_possible(q: jax.Array) -> bool:
    return (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
            and q.shape[-1] % 8 == 0 and q.shape[-1] <= 128)


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float,
    softcap: float | None = None,
    implementation: Implementation = "auto",
) -> jax.Array:
    """Dispatch to the reference kernel or ``jax.nn.dot_product_attention``.

    ``auto`` uses cuDNN flash attention on a GPU for bf16/f16 with head_dim <= 128 and
    a multiple of 8, XLA otherwise, and the reference kernel for soft-capping (which
    the fused kernels do not implement). Shapes as in ``reference_attention``.
    """
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {_IMPLEMENTATIONS}, "
                         f"got {implementation!r}")
    if implementation == "reference" or softcap is not None:
        if softcap is not None and implementation in ("xla", "cudnn"):
            raise ValueError(f"implementation={implementation!r} has no logit soft-capping; "
                             "use 'reference' or 'auto'")
        return reference_attention(q, k, v, mask=mask, bias=bias, scale=scale, softcap=softcap)

    def fused(impl: str) -> jax.Array:
        b = None if bias is None else jnp.broadcast_to(
            bias, (q.shape[0], q.shape[2], q.shape[1], k.shape[1])).astype(q.dtype)
        m = None if mask is None else jnp.broadcast_to(
            mask, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
        return jax.nn.dot_product_attention(q, k, v, bias=b, mask=m, scale=scale,
                                            implementation=impl)

    if implementation == "auto":
        if _cudnn_possible(q):
            try:
                return fused("cudnn")
            except (NotImplementedError, ValueError, RuntimeError) as e:  # decided at trace
                log.info("cuDNN attention unavailable (%s); using XLA", e)
        return fused("xla")
    return fused(implementation)


# ---------------------------------------------------------------------------------------
# KV cache


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Keys and values of one attention layer, for incremental decoding.

    Keys are stored after RoPE. Slots ``[0, end)`` are written; ``valid`` marks real
    tokens (False for left padding and unwritten slots), ``positions`` their positions
    (float32, so progress/PM-RoPE positions survive).

    Shapes: k, v ``[B, S, K, D]``; positions ``[B, S]`` float32; valid ``[B, S]`` bool;
    end ``[]`` int32.
    """

    k: jax.Array
    v: jax.Array
    positions: jax.Array
    valid: jax.Array
    end: jax.Array

    @classmethod
    def empty(cls, batch: int, max_len: int, num_kv_heads: int, head_dim: int,
              dtype: jnp.dtype = jnp.float32) -> KVCache:
        zeros = jnp.zeros((batch, max_len, num_kv_heads, head_dim), dtype)
        return cls(k=zeros, v=zeros, positions=jnp.zeros((batch, max_len), jnp.float32),
                   valid=jnp.zeros((batch, max_len), bool), end=jnp.zeros((), jnp.int32))

    @property
    def max_len(self) -> int:
        return self.k.shape[1]

    def append(self, k: jax.Array, v: jax.Array, positions: jax.Array,
               valid: jax.Array) -> KVCache:
        """Write T new entries at ``end`` (prefill: T = prompt length; decode: T = 1).

        The caller sizes the cache: writing past ``max_len`` would be clamped by
        ``dynamic_update_slice``, so it is refused here whenever ``end`` is concrete.
        """
        t = k.shape[1]
        if t > self.max_len:
            raise ValueError(f"appending {t} tokens to a KV cache of {self.max_len} slots")
        try:
            if int(self.end) + t > self.max_len:
                raise ValueError(f"KV cache overflow: {int(self.end)} + {t} > {self.max_len}")
        except jax.errors.ConcretizationTypeError:
            pass  # traced: the decode loop's bound is the caller's contract
        start = (0, self.end, 0, 0)
        upd = lambda buf, new, idx: jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), idx)
        return KVCache(
            k=upd(self.k, k, start),
            v=upd(self.v, v, start),
            positions=upd(self.positions, jnp.broadcast_to(positions, valid.shape), (0, self.end)),
            valid=upd(self.valid, valid, (0, self.end)),
            end=self.end + t,
        )

    def keep_last(self, n: int) -> KVCache:
        """Drop all but the newest ``n`` written entries, moving them to slots ``[0, n)``
        (a sliding-window cache for unbounded streams: append a chunk, then keep the
        window). Works on stacked ``[L, ...]`` caches too (every layer's ``end`` equal).
        """
        end = jnp.reshape(self.end, (-1,))[0]
        shift = jnp.maximum(end - n, 0)
        slots = self.valid.shape[-1]
        roll = lambda a, axis: jnp.roll(a, -shift, axis=axis)
        kept = jnp.arange(slots) < end - shift
        return KVCache(k=roll(self.k, -3), v=roll(self.v, -3),
                       positions=roll(self.positions, -1),
                       valid=roll(self.valid, -1) & kept,
                       end=jnp.full_like(self.end, end - shift))


# ---------------------------------------------------------------------------------------
# Module


class Attention(nnx.Module):
    """Multi-head attention with ``num_kv_heads`` KV heads (MHA = H, GQA < H, MQA = 1).

    Self-attention when ``context`` is None, cross-attention over ``context`` otherwise.
    RoPE rotates queries by ``positions`` and keys by ``context_positions`` (or
    ``positions`` for self-attention); positions may be fractional (PM-RoPE).

    Shapes: ``x [B, T, dim]``, ``context [B, S, context_dim]`` -> ``[B, T, dim]``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        context_dim: int | None = None,
        causal: bool = False,
        window: int | tuple[int, int] | None = None,
        rope: RoPEConfig | None = None,
        alibi: bool = False,
        softcap: float | None = None,
        query_pre_attn_scalar: float | None = None,
        qk_norm: bool = False,
        use_bias: bool = False,
        implementation: Implementation = "auto",
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_kv_heads = num_kv_heads or num_heads
        head_dim = head_dim or dim // num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of "
                             f"num_kv_heads={num_kv_heads}")
        if rope is not None and alibi:
            raise ValueError("choose RoPE or ALiBi, not both")
        if implementation not in _IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.causal, self.window, self.rope, self.alibi = causal, window, rope, alibi
        self.softcap, self.implementation, self.dtype = softcap, implementation, dtype
        self.scale = (query_pre_attn_scalar or head_dim) ** -0.5
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        kv_in = context_dim or dim
        self.q_proj = Linear(dim, (num_heads, head_dim), axes=(ax.EMBED, ax.HEADS, ax.HEAD_DIM),
                             **kw)
        self.k_proj = Linear(kv_in, (num_kv_heads, head_dim),
                             axes=(ax.EMBED, ax.KV_HEADS, ax.HEAD_DIM), **kw)
        self.v_proj = Linear(kv_in, (num_kv_heads, head_dim),
                             axes=(ax.EMBED, ax.KV_HEADS, ax.HEAD_DIM), **kw)
        self.o_proj = Linear((num_heads, head_dim), dim, axes=(ax.HEADS, ax.HEAD_DIM, ax.EMBED),
                             **kw)
        norm_kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_norm = RMSNorm(head_dim, **norm_kw) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, **norm_kw) if qk_norm else None

    def init_cache(self, batch: int, max_len: int, dtype: jnp.dtype | None = None) -> KVCache:
        """An empty self-attention cache of ``max_len`` slots."""
        return KVCache.empty(batch, max_len, self.num_kv_heads, self.head_dim,
                             dtype or self.dtype or jnp.float32)

    def _keys_values(self, src: jax.Array, positions: jax.Array | None):
        k, v = self.k_proj(src), self.v_proj(src)
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.rope is not None:
            k = apply_rope(k, positions, self.rope)
        return k, v

    def init_cross_cache(self, context: jax.Array, context_valid: jax.Array | None = None,
                         context_positions: jax.Array | None = None) -> KVCache:
        """Project a cross-attention context once, for every decoding step to reuse."""
        b, s = context.shape[:2]
        if self.rope is not None and context_positions is None:
            raise ValueError("RoPE cross-attention needs context_positions")
        k, v = self._keys_values(context, context_positions)
        valid = jnp.ones((b, s), bool) if context_valid is None else context_valid
        pos = jnp.zeros((b, s)) if context_positions is None else context_positions
        return KVCache(k=k, v=v, positions=jnp.broadcast_to(pos, (b, s)).astype(jnp.float32),
                       valid=valid, end=jnp.asarray(s, jnp.int32))

    def __call__(
        self,
        x: jax.Array,
        *,
        positions: jax.Array | None = None,
        valid: jax.Array | None = None,
        context: jax.Array | KVCache | None = None,
        context_positions: jax.Array | None = None,
        context_valid: jax.Array | None = None,
        mask: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> jax.Array | tuple[jax.Array, KVCache]:
        """Attend from ``x`` to itself, or to ``context``.

        Args:
          x: ``[B, T, dim]`` queries' input.
          positions: ``[B, T]`` or ``[T]`` positions of x's tokens; default ``arange(T)``,
            continuing from ``cache.end`` when a self-attention cache is given.
          valid: ``[B, T]`` bool, False for padding tokens of x.
          context: cross-attention source ``[B, S, context_dim]``, or its keys and values
            precomputed once by ``init_cross_cache`` (then context_positions/valid are
            taken from it).
          context_positions, context_valid: as positions/valid, for an array context.
          mask: extra ``[B, 1|H, T, S]`` bool mask, combined with the built one.
          cache: self-attention ``KVCache``: the new keys are appended and the queries
            attend to everything cached.

        Returns:
          ``[B, T, dim]``; with a self-attention cache, ``(output, updated_cache)``.
        """
        b, t, _ = x.shape
        if positions is None:
            start = cache.end if cache is not None else 0
            positions = start + jnp.arange(t)
        positions = jnp.broadcast_to(positions, (b, t))
        if valid is None:
            valid = jnp.ones((b, t), bool)

        q = self.q_proj(x)
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.rope is not None:
            q = apply_rope(q, positions, self.rope)

        cross = context is not None
        if cross and cache is not None:
            raise ValueError("a self-attention cache was given with a cross-attention context")
        if cross:
            kv = context if isinstance(context, KVCache) else self.init_cross_cache(
                context, context_valid, context_positions)
            k, v, kv_pos, kv_valid = kv.k, kv.v, kv.positions, kv.valid
        else:
            k, v = self._keys_values(x, positions)
            kv_pos, kv_valid = positions, valid
            if cache is not None:
                cache = cache.append(k, v, positions, valid)
                k, v, kv_pos, kv_valid = cache.k, cache.v, cache.positions, cache.valid

        built = make_attention_mask(
            q_valid=valid, kv_valid=kv_valid, q_positions=positions, kv_positions=kv_pos,
            causal=self.causal and not cross, window=None if cross else self.window)
        if mask is not None:
            built = mask if built is None else jnp.logical_and(built, mask)
        bias = alibi_bias(positions, kv_pos, self.num_heads) if self.alibi else None

        dt = ax.compute_dtype(x, self.dtype)
        out = dot_product_attention(q.astype(dt), k.astype(dt), v.astype(dt), mask=built,
                                    bias=bias, scale=self.scale, softcap=self.softcap,
                                    implementation=self.implementation)
        out = self.o_proj(out)
        return out if cache is None else (out, cache)
