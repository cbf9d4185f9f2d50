import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.attention import Attention, KVCache, dot_product_attention, reference_attention
from common.nn.masks import make_attention_mask, positions_from_valid, valid_from_lengths
from common.nn.positional import RoPEConfig, alibi_bias
from tests.common.nn import np_reference as npr
from tests.helpers import assert_close, assert_params_have_axes


def _qkv(rng, b=2, t=5, s=6, h=4, kh=2, d=8):
    q = rng.standard_normal((b, t, h, d)).astype(np.float32)
    k = rng.standard_normal((b, s, kh, d)).astype(np.float32)
    v = rng.standard_normal((b, s, kh, d)).astype(np.float32)
    return q, k, v


def _random_mask(rng, b, t, s):
    m = rng.random((b, 1, t, s)) > 0.4
    m[..., 0] = True  # every query row keeps at least one key
    return m


@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_reference_kernel_matches_float64(rng, heads, softcap, with_bias):
    h, kh = heads
    q, k, v = _qkv(rng, h=h, kh=kh)
    mask = _random_mask(rng, 2, 5, 6)
    bias = np.asarray(alibi_bias(jnp.arange(5.0), jnp.arange(6.0), h)) if with_bias else None
    ours = reference_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=mask,
                               bias=bias, scale=0.3, softcap=softcap)
    ref = npr.attention(q, k, v, mask=mask, bias=bias, scale=0.3, softcap=softcap)
    assert ours.shape == q.shape and ours.dtype == jnp.float32
    assert_close(ours, ref, 1e-5)


@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_fused_xla_path_equals_reference(rng, heads):
    q, k, v = (jnp.asarray(a) for a in _qkv(rng, h=heads[0], kh=heads[1]))
    mask = _random_mask(rng, 2, 5, 6)
    bias = alibi_bias(jnp.arange(5.0), jnp.arange(6.0), heads[0])
    ref = reference_attention(q, k, v, mask=mask, bias=bias, scale=0.25)
    fused = dot_product_attention(q, k, v, mask=mask, bias=bias, scale=0.25,
                                  implementation="xla")
    assert_close(fused, ref, 1e-5)


def test_softcap_needs_reference_kernel(rng):
    q, k, v = (jnp.asarray(a) for a in _qkv(rng))
    with pytest.raises(ValueError, match="soft-capping"):
        dot_product_attention(q, k, v, scale=1.0, softcap=10.0, implementation="xla")
    with pytest.raises(ValueError, match="implementation"):
        dot_product_attention(q, k, v, scale=1.0, implementation="flash")


def _module_reference(attn: Attention, x, context=None, *, positions, kv_positions, mask,
                      rope: RoPEConfig | None, scale):
    """The whole layer in float64 numpy from the module's own weights."""
    w = lambda lin: np.asarray(lin.kernel[...], np.float64)
    src = x if context is None else context
    q = np.einsum("btc,chd->bthd", x, w(attn.q_proj))
    k = np.einsum("bsc,chd->bshd", src, w(attn.k_proj))
    v = np.einsum("bsc,chd->bshd", src, w(attn.v_proj))
    if rope is not None:
        rot = rope.rotary_dim(q.shape[-1])
        q = npr.rope_complex(q, positions, rope.base, rot, rope.interleaved)
        k = npr.rope_complex(k, kv_positions, rope.base, rot, rope.interleaved)
    o = npr.attention(q, k, v, mask=mask, scale=scale)
    return np.einsum("bthd,hdc->btc", o, w(attn.o_proj))


@pytest.mark.parametrize("kv_heads,qpas", [(4, None), (2, 32.0), (1, None)])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_self_attention_module_matches_float64(rng, kv_heads, qpas):
    rope = RoPEConfig(base=500.0, fraction=0.5)
    attn = Attention(32, 4, num_kv_heads=kv_heads, causal=True, rope=rope,
                     query_pre_attn_scalar=qpas, rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, 6, 32)).astype(np.float32)
    lengths = jnp.array([4, 6])
    valid = valid_from_lengths(lengths, 6)
    pos = positions_from_valid(valid)
    out = attn(jnp.asarray(x), positions=pos, valid=valid)
    mask = np.array(make_attention_mask(q_valid=valid, kv_valid=valid, q_positions=pos,
                                         kv_positions=pos, causal=True))
    mask[..., :, 0] |= ~np.asarray(valid)[:, None, :]  # padding rows: any finite value
    ref = _module_reference(attn, x, positions=np.asarray(pos), kv_positions=np.asarray(pos),
                            mask=mask, rope=rope, scale=(qpas or 8) ** -0.5)
    assert_close(out, ref, 1e-5, where=np.asarray(valid))


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_left_padding_does_not_change_valid_outputs(rng):
    attn = Attention(16, 2, causal=True, rope=RoPEConfig(), rngs=nnx.Rngs(1))
    x = jnp.asarray(rng.standard_normal((1, 4, 16)), jnp.float32)
    alone = attn(x)
    padded = jnp.concatenate([jnp.full((1, 3, 16), 7.0), x], axis=1)
    valid = valid_from_lengths(jnp.array([4]), 7)
    out = attn(padded, positions=positions_from_valid(valid), valid=valid)
    assert_close(out[:, 3:], alone, 1e-5)


def test_cross_attention_with_rope_and_precomputed_context(rng):
    rope = RoPEConfig(base=100.0)
    attn = Attention(16, 4, num_kv_heads=2, context_dim=12, rope=rope, rngs=nnx.Rngs(2))
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    ctx = rng.standard_normal((2, 5, 12)).astype(np.float32)
    q_pos = np.array([[0.0, 0.5, 1.0]] * 2, np.float32)  # progress positions
    k_pos = np.tile(np.linspace(0, 1, 5, dtype=np.float32), (2, 1))
    ctx_valid = jnp.array([[True] * 5, [True] * 3 + [False] * 2])
    out = attn(jnp.asarray(x), positions=q_pos, context=jnp.asarray(ctx),
               context_positions=k_pos, context_valid=ctx_valid)
    mask = np.broadcast_to(np.asarray(ctx_valid)[:, None, None, :], (2, 1, 3, 5))
    ref = _module_reference(attn, x, ctx, positions=q_pos, kv_positions=k_pos, mask=mask,
                            rope=rope, scale=4 ** -0.5)
    assert_close(out, ref, 1e-5)
    cached = attn.init_cross_cache(jnp.asarray(ctx), ctx_valid, k_pos)
    out2 = attn(jnp.asarray(x), positions=q_pos, context=cached)
    np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="context_positions"):
        attn(jnp.asarray(x), positions=q_pos, context=jnp.asarray(ctx))


@pytest.mark.parametrize(
    "kw",
    [dict(num_kv_heads=2, rope=RoPEConfig()),
     dict(num_kv_heads=1, rope=RoPEConfig(fraction=0.5), window=3),
     dict(alibi=True, softcap=20.0)],
    ids=["gqa-rope", "mqa-window", "alibi-softcap"])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_kv_cache_prefill_and_decode_equal_full_pass(rng, kw):
    attn = Attention(32, 4, causal=True, rngs=nnx.Rngs(3), **kw)
    b, t, prompt = 2, 9, 4
    x = jnp.asarray(rng.standard_normal((b, t, 32)), jnp.float32)
    # Left-padded batch: item 0 has one padding token in front.
    valid = jnp.ones((b, t), bool).at[0, 0].set(False)
    pos = positions_from_valid(valid)
    full = attn(x, positions=pos, valid=valid)

    graphdef, state = nnx.split(attn)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, cache, x_t, pos_t):
        layer = nnx.merge(graphdef, state)
        return layer(x_t, positions=pos_t, valid=jnp.ones(pos_t.shape, bool), cache=cache)

    cache = attn.init_cache(b, 12)
    out, cache = attn(x[:, :prompt], positions=pos[:, :prompt], valid=valid[:, :prompt],
                      cache=cache)
    outs = [out]
    for i in range(prompt, t):
        o, cache = step(state, cache, x[:, i:i + 1], pos[:, i:i + 1])
        outs.append(o)
    decoded = jnp.concatenate(outs, axis=1)
    assert int(cache.end) == t
    assert_close(decoded, full, 1e-5, where=np.asarray(valid))


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_kv_cache_default_positions_continue_and_overflow_is_refused(rng):
    attn = Attention(16, 2, causal=True, rope=RoPEConfig(), rngs=nnx.Rngs(4))
    x = jnp.asarray(rng.standard_normal((1, 5, 16)), jnp.float32)
    full = attn(x)
    cache = attn.init_cache(1, 5)
    a, cache = attn(x[:, :3], cache=cache)
    b, cache = attn(x[:, 3:], cache=cache)
    assert_close(jnp.concatenate([a, b], 1), full, 1e-5)
    with pytest.raises(ValueError, match="overflow"):
        attn(x[:, :1], cache=cache)


def test_cache_pytree_roundtrip():
    c = KVCache.empty(2, 4, 1, 8)
    leaves, tree = jax.tree.flatten(c)
    assert len(leaves) == 5
    assert jax.tree.unflatten(tree, leaves).max_len == 4


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_params_have_logical_axes_and_grads_are_finite(rng):
    attn = Attention(16, 4, num_kv_heads=2, qk_norm=True, use_bias=True, causal=True,
                     rope=RoPEConfig(), rngs=nnx.Rngs(5))
    assert_params_have_axes(attn)
    assert ax.logical_axes(attn.q_proj.kernel) == (ax.EMBED, ax.HEADS, ax.HEAD_DIM)
    assert ax.logical_axes(attn.k_proj.kernel) == (ax.EMBED, ax.KV_HEADS, ax.HEAD_DIM)
    assert ax.logical_axes(attn.o_proj.kernel) == (ax.HEADS, ax.HEAD_DIM, ax.EMBED)

    x = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(attn)
    flat = jax.tree.leaves(grads)
    assert flat and all(bool(jnp.all(jnp.isfinite(g))) for g in flat)
    assert any(float(jnp.abs(g).max()) > 0 for g in flat)


def test_bf16_compute_keeps_f32_params(rng):
    attn = Attention(16, 2, causal=True, rope=RoPEConfig(), dtype=jnp.bfloat16,
                     rngs=nnx.Rngs(6))
    assert attn.q_proj.kernel[...].dtype == jnp.float32
    x = jnp.asarray(rng.standard_normal((1, 4, 16)), jnp.float32)
    out = jax.jit(lambda m, x: m(x))(attn, x)
    assert out.dtype == jnp.bfloat16
    ref = Attention(16, 2, causal=True, rope=RoPEConfig(), rngs=nnx.Rngs(6))(x)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2, rtol=5e-2)


def test_constructor_validation():
    with pytest.raises(ValueError, match="multiple"):
        Attention(16, 4, num_kv_heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not both"):
        Attention(16, 4, rope=RoPEConfig(), alibi=True, rngs=nnx.Rngs(0))
