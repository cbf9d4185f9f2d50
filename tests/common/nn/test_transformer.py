import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import axes as ax
from common.nn.masks import positions_from_valid
from common.nn.positional import RoPEConfig
from common.nn.transformer import TransformerConfig, TransformerStack
from tests.helpers import assert_close, assert_params_have_axes

BASE = TransformerConfig(dim=32, num_layers=3, num_heads=4, num_kv_heads=2, mlp_dim=48,
                         causal=True, rope=RoPEConfig(base=1000.0))


def _copy_scan_to_list(scan_model: TransformerStack, list_model: TransformerStack) -> None:
    """Give a list-of-layers stack the weights of a scanned stack."""
    scanned = nnx.to_pure_dict(nnx.state(scan_model, nnx.Param))
    listed = nnx.to_pure_dict(nnx.state(list_model, nnx.Param))
    for i in listed["layers"]:
        listed["layers"][i] = jax.tree.map(lambda a, i=i: a[i], scanned["layers"])
    if "final_norm" in scanned:
        listed["final_norm"] = scanned["final_norm"]
    state = nnx.state(list_model, nnx.Param)
    nnx.replace_by_pure_dict(state, listed)
    nnx.update(list_model, state)


def _x(rng, b=2, t=7, d=32):
    return jnp.asarray(rng.standard_normal((b, t, d)), jnp.float32)


@pytest.mark.parametrize("post_norm,norm", [(False, "rms"), (True, "rms"), (False, "layer")])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_scan_equals_python_loop(rng, post_norm, norm):
    cfg = dataclasses.replace(BASE, post_norm=post_norm, norm=norm)
    scanned = TransformerStack(cfg, rngs=nnx.Rngs(0))
    looped = TransformerStack(dataclasses.replace(cfg, scan_layers=False), rngs=nnx.Rngs(1))
    _copy_scan_to_list(scanned, looped)
    x = _x(rng)
    a, b = scanned(x), looped(x)
    assert a.shape == x.shape and a.dtype == jnp.float32
    assert_close(a, b, 1e-5)


def test_layers_are_stacked_with_logical_axes():
    model = TransformerStack(BASE, rngs=nnx.Rngs(0))
    assert_params_have_axes(model)
    for path, var in nnx.to_flat_state(nnx.state(model.layers, nnx.Param)):
        names = ax.logical_axes(var)
        assert names is not None and names[0] == ax.LAYERS, (path, names)
        assert var[...].shape[0] == BASE.num_layers and len(names) == var[...].ndim
    q = model.layers.attn.q_proj.kernel
    assert ax.logical_axes(q) == (ax.LAYERS, ax.EMBED, ax.HEADS, ax.HEAD_DIM)


# "full" is the fast check; each policy compiles a forward and a backward of its own.
@pytest.mark.parametrize("remat", ["full", "dots", "dots_no_batch"])
@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_remat_gives_the_same_gradients(rng, remat):
    x = _x(rng)
    loss = lambda m: jnp.mean(m(x) ** 2)
    plain = TransformerStack(BASE, rngs=nnx.Rngs(0))
    rematted = TransformerStack(dataclasses.replace(BASE, remat=remat), rngs=nnx.Rngs(0))
    g1 = jax.jit(nnx.grad(loss))(plain)
    g2 = jax.jit(nnx.grad(loss))(rematted)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        assert_close(b, a, 1e-5)


@pytest.mark.slow  # compile-heavy: CI runs it, the fast subset leaves it out
def test_kv_cached_stack_decode_equals_full_pass(rng):
    cfg = dataclasses.replace(BASE, window=4, post_norm=True)
    model = TransformerStack(cfg, rngs=nnx.Rngs(2))
    x = _x(rng, t=8)
    valid = jnp.ones((2, 8), bool).at[1, :2].set(False)
    pos = positions_from_valid(valid)
    full = model(x, positions=pos, valid=valid)

    graphdef, state = nnx.split(model)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def decode(state, cache, x_t, pos_t):
        return nnx.merge(graphdef, state)(x_t, positions=pos_t,
                                          valid=jnp.ones(pos_t.shape, bool), cache=cache)

    cache = model.init_cache(2, 10)
    assert cache.k.shape == (3, 2, 10, 2, 8)
    out, cache = model(x[:, :3], positions=pos[:, :3], valid=valid[:, :3], cache=cache)
    outs = [out]
    for i in range(3, 8):
        o, cache = decode(state, cache, x[:, i:i + 1], pos[:, i:i + 1])
        outs.append(o)
    assert_close(jnp.concatenate(outs, 1), full, 1e-5, where=np.asarray(valid))


@pytest.mark.slow  # the scanned cached decode above is the fast check
def test_unscanned_stack_with_cache(rng):
    cfg = dataclasses.replace(BASE, scan_layers=False)
    model = TransformerStack(cfg, rngs=nnx.Rngs(3))
    x = _x(rng, t=5)
    full = model(x)
    cache = model.init_cache(2, 5)
    a, cache = model(x[:, :2], cache=cache)
    b, cache = model(x[:, 2:], cache=cache)
    assert_close(jnp.concatenate([a, b], 1), full, 1e-5)


@pytest.mark.slow
def test_cross_attention_stack(rng):
    cfg = dataclasses.replace(BASE, cross_attention=True, context_dim=24, causal=False,
                              rope=None, alibi=True)
    model = TransformerStack(cfg, rngs=nnx.Rngs(4))
    x, ctx = _x(rng), jnp.asarray(rng.standard_normal((2, 5, 24)), jnp.float32)
    ctx_valid = jnp.array([[True] * 5, [True] * 2 + [False] * 3])
    out = jax.jit(lambda m, x, c, v: m(x, context=c, context_valid=v))(model, x, ctx, ctx_valid)
    assert out.shape == x.shape
    # Masked context tokens must not matter.
    ctx2 = ctx.at[1, 2:].set(100.0)
    out2 = model(x, context=ctx2, context_valid=ctx_valid)
    assert_close(out2, out, 1e-5)
    # ... while a valid one does.
    out3 = model(x, context=ctx.at[1, 0].set(100.0), context_valid=ctx_valid)
    assert float(jnp.abs(out3[1] - out[1]).max()) > 1e-3
    with pytest.raises(ValueError, match="context"):
        model(x)


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_dropout_only_in_train_mode(rng):
    model = TransformerStack(dataclasses.replace(BASE, dropout=0.5), rngs=nnx.Rngs(5))
    x = _x(rng)
    model.eval()
    a, b = model(x), model(x)
    np.testing.assert_array_equal(a, b)
    model.train()
    c, d = model(x), model(x)
    assert float(jnp.abs(c - a).max()) > 1e-3 and float(jnp.abs(c - d).max()) > 1e-3


@pytest.mark.slow  # over 3 s: CI runs it, the fast subset leaves it out
def test_bf16_compute_and_gemma_style_features(rng):
    cfg = dataclasses.replace(BASE, dtype="bfloat16", softcap=50.0, query_pre_attn_scalar=16.0,
                              zero_centered_norm=True, post_norm=True, qk_norm=True,
                              activation="gelu_tanh")
    model = TransformerStack(cfg, rngs=nnx.Rngs(6))
    x = _x(rng)
    out = jax.jit(lambda m, x: m(x))(model, x)
    assert out.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))
    ref = TransformerStack(dataclasses.replace(cfg, dtype=None), rngs=nnx.Rngs(6))(x)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.1, rtol=0.1)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)


def test_config_validation():
    with pytest.raises(ValueError, match="norm"):
        dataclasses.replace(BASE, norm="batch")
    with pytest.raises(ValueError, match="remat"):
        dataclasses.replace(BASE, remat="sometimes")
    with pytest.raises(ValueError, match="head_dim"):
        dataclasses.replace(BASE, dim=30)
