"""DiT: the transformer denoiser of latent diffusion (Peebles & Xie 2023, "Scalable diffusion
models with transformers"), with RMSNorm-based adaLN-Zero (``AdaRMSZero``) and RoPE.

``DiT(x_t, t, cond)`` is the ``model_fn`` of ``objectives.py`` / ``samplers.py``:

    x [B, H, W, C] (or [B, T, C])  --patchify-->  tokens [B, N, dim]
    t [B]  --sinusoid(1000 t)--> MLP --+
    class id [B]  --table (+ null row)--+--> c [B, dim] --SiLU--> every block, final layer
    vector [B, cond_dim]  --Linear------+
    block:   h, g = AdaRMSZero(x, c); x += g * attn(h, RoPE)
             h, g = AdaRMSZero(x, c); x += g * mlp(h)
    final:   RMSNorm(x) * (1 + scale(c)) + shift(c) -> Linear -> unpatchify -> [B, H, W, C]

At initialisation every block's gate and the final projection are zero, so every block is
the identity and the output is exactly 0 (DiT's adaLN-Zero).

Choices:

- Patchify is reshape + Linear rather than a Conv with kernel = stride = patch (the same
  map): one code path for 1-D and 2-D latents, a plain ``[p^d C, dim]`` kernel, and
  unpatchify is the inverse of the same reshape, so the token <-> patch order is defined
  once (``_patchify`` / ``_unpatchify``).
- Positions: no learned or sin-cos table, RoPE in every attention layer, so any multiple of
  the patch is a valid input size. For images it is the axial 2-D RoPE: each head's dims
  split in two halves, the first rotated by the patch's row, the second by its column,
  each half with its own full frequency ladder (``axial_rope``; 1-D latents: plain RoPE).
  ``common.nn.Attention`` rotates by one position per token, so the blocks use its
  projections and its kernel but rotate queries and keys here (``_attend``).
- Conditioning follows ``conditioning.py``, shared with the UNet: ``cond`` is None or a
  dict with ``"class"`` (int ``[B]``) and/or ``"vector"`` (``[B, cond_dim]``); a missing
  entry, or ``cond=None``, is the null condition: the learned null class row (id
  ``num_classes``, or ``NULL_CLASS = -1``, which ``conditioning.drop_condition`` writes) and
  the zero vector (the vector projection has no bias, so it adds exactly nothing). So
  ``samplers.guided(model_fn, scale)`` (``null_cond=None``) and ``guided(model_fn, scale,
  conditioning.null_condition(cfg))`` (one call of batch 2B) are the same guidance, and
  ``conditioning.drop_condition(cond, key, cfg.cond_dropout)`` is the training half.
- The scanned blocks run under ``jax.lax.scan`` on the split block state, not
  ``nnx.scan``: the samplers call the model from a ``jax.lax.fori_loop`` that closes over
  it, and nnx's transforms refuse variables captured from an outer trace. So
  ``lambda x, t, c: model(x, t, c)`` is a valid ``model_fn`` under ``nnx.jit``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import axes as ax
from common.nn.attention import Attention, dot_product_attention
from common.nn.ffn import FeedForward
from common.nn.linear import Embed, Linear
from common.nn.norms import AdaRMSZero, RMSNorm, broadcast_cond
from common.nn.positional import RoPEConfig, apply_rope
from worldmodel.diffusion.conditioning import (
    NULL_CLASS,
    Cond,
    check_condition,
    class_rows,
    timestep_embedding,
)
from worldmodel.diffusion.dit_config import DiTConfig

FREQ_DIM = 256  # DiT's timestep frequency embedding width


# ------------------------------------------------------------------ positions and RoPE


def patch_positions(grid: tuple[int, ...]) -> jax.Array:
    """Integer coordinates of each token of a patch grid, row-major: ``[prod(grid), len(grid)]``.

    ``grid = (h, w)`` gives ``[[0, 0], [0, 1], ..., [h-1, w-1]]``: token ``i`` is row
    ``i // w``, column ``i % w``, the order ``_patchify`` lays the tokens out in.
    """
    mesh = jnp.meshgrid(*(jnp.arange(n, dtype=jnp.int32) for n in grid), indexing="ij")
    return jnp.stack([m.reshape(-1) for m in mesh], axis=-1)


def axial_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Axial RoPE: split each head's dims into ``A`` equal chunks, rotate chunk ``a`` by the
    ``a``-th coordinate with ``common.nn.positional.apply_rope``.

    x: ``[B, N, H, D]`` with ``D`` a multiple of ``2 A``; positions: ``[N, A]`` (or
    ``[B, N, A]``). ``A = 1`` is plain RoPE. Each chunk has the frequencies of a
    ``D / A``-dim RoPE, so a chunk's score depends on the difference of its coordinate
    only, and the score of two tokens on their offset ``(d_row, d_col)``.
    Returns ``[B, N, H, D]`` in x's dtype.
    """
    n_axes = positions.shape[-1]
    cfg = RoPEConfig(base=base)
    chunks = jnp.split(x, n_axes, axis=-1)
    return jnp.concatenate(
        [apply_rope(c, positions[..., a], cfg) for a, c in enumerate(chunks)], axis=-1)


# ------------------------------------------------------------------ patches


def _grid(cfg: DiTConfig, x: jax.Array) -> tuple[int, ...]:
    """The patch grid of ``x``, after checking its layout and size against ``cfg``."""
    layout = "[B, H, W, C]" if cfg.spatial_dims == 2 else "[B, T, C]"
    if x.ndim != cfg.spatial_dims + 2 or x.shape[-1] != cfg.in_channels:
        raise ValueError(f"DiT(spatial_dims={cfg.spatial_dims}, in_channels={cfg.in_channels}) "
                         f"expects {layout} with C={cfg.in_channels}, got {x.shape}")
    sizes = x.shape[1:-1]
    if any(s % cfg.patch_size or s == 0 for s in sizes):
        raise ValueError(f"DiT: spatial sizes {sizes} of x {x.shape} must be positive "
                         f"multiples of patch_size={cfg.patch_size}")
    return tuple(s // cfg.patch_size for s in sizes)


def _patchify(x: jax.Array, p: int) -> jax.Array:
    """``[B, n_1 p, ..., n_d p, C] -> [B, n_1 ... n_d, p^d C]``, tokens row-major."""
    b, *sizes, c = x.shape
    grid = [s // p for s in sizes]
    d = len(grid)
    x = x.reshape(b, *[v for n in grid for v in (n, p)], c)  # [B, n1, p, n2, p, C]
    x = x.transpose(0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1)
    return x.reshape(b, math.prod(grid), p**d * c)


def _unpatchify(tokens: jax.Array, grid: tuple[int, ...], p: int) -> jax.Array:
    """The inverse of ``_patchify``: ``[B, N, p^d C] -> [B, n_1 p, ..., n_d p, C]``."""
    b, d = tokens.shape[0], len(grid)
    c = tokens.shape[-1] // p**d
    x = tokens.reshape(b, *grid, *([p] * d), c)  # [B, n1, n2, p, p, C]
    order = [i for k in range(d) for i in (1 + k, 1 + d + k)]
    x = x.transpose(0, *order, 2 * d + 1)
    return x.reshape(b, *[n * p for n in grid], c)


# ------------------------------------------------------------------ time


class TimeEmbedding(nnx.Module):
    """``t [B]`` in [0, 1] -> ``[B, dim]``: the frequency embedding, Linear, SiLU, Linear.

    DiT's initialisation, normal(0.02). Always float32: it is tiny, and bf16 would round
    the sinusoid's arguments (up to 1000 rad) to a few rad.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        kw = dict(use_bias=True, kernel_init=init, rngs=rngs)
        self.fc1 = Linear(FREQ_DIM, dim, axes=(None, ax.COND), **kw)
        self.fc2 = Linear(dim, dim, axes=(None, ax.COND), **kw)

    def __call__(self, t: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(timestep_embedding(t, FREQ_DIM))))


# ------------------------------------------------------------------ blocks


class DiTBlock(nnx.Module):
    """``x [B, N, dim]``, ``c [B, dim]`` (after SiLU) -> ``[B, N, dim]``:
    ``x + g1 * attn(h1)``, then ``+ g2 * mlp(h2)``, ``(h, g) = AdaRMSZero(x, c)``."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, rngs=rngs)
        self.attn_norm = AdaRMSZero(cfg.dim, cfg.dim, **kw)
        # rope=None: queries and keys are rotated in _attend by the patch coordinates.
        self.attn = Attention(cfg.dim, cfg.num_heads, qk_norm=cfg.qk_norm, use_bias=True, **kw)
        self.ffn_norm = AdaRMSZero(cfg.dim, cfg.dim, **kw)
        # DiT's MLP: plain GELU (tanh approximation) with biases.
        self.ffn = FeedForward(cfg.dim, cfg.mlp_dim, activation="gelu_tanh", gated=False,
                               use_bias=True, **kw)
        self.rope_base = cfg.rope_base

    def _attend(self, h: jax.Array, positions: jax.Array, mask: jax.Array | None) -> jax.Array:
        a = self.attn
        q, k, v = a.q_proj(h), a.k_proj(h), a.v_proj(h)  # [B, N, heads, head_dim]
        if a.q_norm is not None:
            q, k = a.q_norm(q), a.k_norm(k)
        q, k = axial_rope(q, positions, self.rope_base), axial_rope(k, positions, self.rope_base)
        out = dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask,
                                    scale=a.scale, implementation=a.implementation)
        return a.o_proj(out)

    def __call__(self, x: jax.Array, c: jax.Array, positions: jax.Array,
                 mask: jax.Array | None = None) -> jax.Array:
        h, gate = self.attn_norm(x, c)
        x = x + (gate * self._attend(h, positions, mask)).astype(x.dtype)
        h, gate = self.ffn_norm(x, c)
        return x + (gate * self.ffn(h)).astype(x.dtype)


class FinalLayer(nnx.Module):
    """``x [B, N, dim]``, ``c [B, dim]`` -> ``[B, N, patch_dim]``: adaptive RMSNorm
    (shift, scale from c) and a Linear, both zero-initialised as DiT's, so the model's
    output is exactly 0 at initialisation."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        zeros = nnx.initializers.zeros_init()
        kw = dict(use_bias=True, kernel_init=zeros, bias_init=zeros, dtype=cfg.dtype,
                  rngs=rngs)
        self.norm = RMSNorm(cfg.dim, use_scale=False, dtype=cfg.dtype)
        # Kernel [dim, 2, dim] (scale, shift) as AdaRMSZero's, without its gate: the
        # output projection itself starts at zero.
        self.modulation = Linear(cfg.dim, (2, cfg.dim), axes=(ax.COND, None, ax.EMBED), **kw)
        self.proj = Linear(cfg.dim, cfg.patch_dim, axes=(ax.EMBED, None), **kw)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        mod = self.modulation(c).astype(jnp.float32)
        scale, shift = (broadcast_cond(mod[..., i, :], x) for i in range(2))
        y = self.norm(x).astype(jnp.float32) * (1.0 + scale) + shift
        return self.proj(y.astype(x.dtype))


# ------------------------------------------------------------------ the model


class DiT(nnx.Module):
    """The denoiser ``(x_t, t, cond) -> prediction`` (module docstring).

    Shapes: ``x [B, H, W, C]`` (``spatial_dims=2``) or ``[B, T, C]`` (1), sizes any
    positive multiple of ``patch_size``; ``t [B]`` float in [0, 1]; ``cond`` None or
    ``{"class": int [B], "vector": [B, cond_dim]}``; ``valid`` (sequences only) ``[B, T]``
    bool, False on padding: a token attends to the patches with a valid frame only.
    Returns the prediction shaped as ``x``, in the compute dtype (``cfg.dtype``, else x's).
    """

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.patch_embed = Linear(cfg.patch_dim, cfg.dim, axes=(None, ax.EMBED), use_bias=True,
                                  dtype=cfg.dtype, rngs=rngs)
        self.time_embed = TimeEmbedding(cfg.dim, rngs=rngs)
        # DiT's LabelEmbedder: normal(0.02), one extra row for the null class.
        self.class_embed = (Embed(cfg.num_classes + 1, cfg.dim,
                                  embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
                            if cfg.num_classes else None)
        # No bias: the null (zero) vector then adds exactly nothing (the time MLP has one).
        self.vector_embed = (Linear(cfg.cond_dim, cfg.dim, axes=(None, ax.COND), rngs=rngs)
                             if cfg.cond_dim else None)
        if cfg.scan_layers:
            @nnx.split_rngs(splits=cfg.depth)
            @nnx.vmap(in_axes=(0,), out_axes=0,
                      transform_metadata={nnx.PARTITION_NAME: ax.LAYERS})
            def create(rngs: nnx.Rngs) -> DiTBlock:
                return DiTBlock(cfg, rngs=rngs)

            self.blocks = create(rngs)
        else:
            self.blocks = nnx.List([DiTBlock(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg, rngs=rngs)

    def condition(self, t: jax.Array, cond: Cond) -> jax.Array:
        """The conditioning vector ``c [B, dim]`` float32, before the SiLU."""
        cfg = self.cfg
        cond = check_condition(cond, cfg.num_classes, cfg.cond_dim, "DiT")
        t = jnp.asarray(t, jnp.float32)
        c = self.time_embed(t)
        batch = t.shape[0]
        if self.class_embed is not None:
            ids = class_rows(cond.get("class", jnp.full((batch,), NULL_CLASS)), cfg.num_classes)
            c = c + self.class_embed(ids).astype(jnp.float32)
        if self.vector_embed is not None:
            vec = cond.get("vector", jnp.zeros((batch, cfg.cond_dim), jnp.float32))
            if jnp.shape(vec) != (batch, cfg.cond_dim):
                raise ValueError(f"DiT cond['vector'] must be [B={batch}, "
                                 f"cond_dim={cfg.cond_dim}], got {jnp.shape(vec)}")
            c = c + self.vector_embed(jnp.asarray(vec, jnp.float32))
        return c

    def __call__(self, x: jax.Array, t: jax.Array, cond: Cond = None,
                 valid: jax.Array | None = None) -> jax.Array:
        cfg = self.cfg
        grid = _grid(cfg, x)
        if jnp.shape(t) != (x.shape[0],):
            raise ValueError(f"DiT: t must be [B={x.shape[0]}], got shape {jnp.shape(t)}")
        dt = ax.compute_dtype(x, cfg.dtype)
        # SiLU once here, shared by every block's and the final layer's modulation.
        c = jax.nn.silu(self.condition(t, cond)).astype(dt)
        h = self.patch_embed(_patchify(x.astype(dt), cfg.patch_size))
        positions = patch_positions(grid)
        mask = None
        if valid is not None:
            if cfg.spatial_dims != 1 or valid.shape != x.shape[:2]:
                raise ValueError(f"DiT: valid must be [B, T] = {x.shape[:2]} for sequence "
                                 f"latents (spatial_dims=1), got {jnp.shape(valid)}")
            token_valid = valid.reshape(x.shape[0], -1, cfg.patch_size).any(-1)  # [B, N]
            mask = token_valid[:, None, None, :]  # keys only: padded queries stay finite

        if cfg.scan_layers:
            # jax.lax.scan over the split blocks rather than nnx.scan: nnx's transforms
            # refuse variables captured from an outer trace, and the samplers call the
            # model from inside a fori_loop, so nnx.scan would fail there.
            graphdef, stacked = nnx.split(self.blocks)

            def run(h, layer):
                return nnx.merge(graphdef, layer)(h, c, positions, mask), None

            h, _ = jax.lax.scan(run, h, stacked)
        else:
            for block in self.blocks:
                h = block(h, c, positions, mask)
        return _unpatchify(self.final(h, c), grid, cfg.patch_size)

