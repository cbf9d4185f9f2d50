"""DiT denoiser: config validation, shapes of both layouts, adaLN-Zero at initialisation,
jit + grad, axial RoPE against a complex-number reference, conditioning, the null condition,
condition dropout and a guided sampling smoke test.

Most tests perturb every parameter first (``_perturb``): at initialisation the gates and the
final projection are zero, so the output is 0 whatever the input, position or condition.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from worldmodel.diffusion.conditioning import NULL_CLASS, drop_condition, null_condition
from worldmodel.diffusion.dit import DiT, _patchify, _unpatchify, axial_rope, patch_positions
from worldmodel.diffusion.dit_config import DiTConfig
from worldmodel.diffusion.objectives import FlowMatching
from worldmodel.diffusion.samplers import guided, sample

N_CLASSES, COND_DIM = 3, 5


def _cfg(spatial_dims: int = 2, **kw) -> DiTConfig:
    return DiTConfig.tiny(spatial_dims=spatial_dims, num_classes=N_CLASSES, cond_dim=COND_DIM,
                          **kw)


def _perturb(model: nnx.Module, seed: int = 1, scale: float = 0.1) -> nnx.Module:
    """Add ``scale * N(0, 1)`` to every parameter, so the zero-initialised ones are not.

    numpy draws the noise: an eager jax.random call compiles once per parameter shape.
    """
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    noisy = [jnp.asarray(np.asarray(v) + scale * rng.standard_normal(v.shape), v.dtype)
             for v in leaves]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))
    return model


def _inputs(cfg: DiTConfig, batch: int = 3, seed: int = 0, size: tuple[int, ...] | None = None):
    """x ``[B, *size, C]``, t ``[B]``, cond with every class id, the null one included."""
    rng = np.random.default_rng(seed)
    size = size or cfg.latent_shape[:-1]
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    x = f32(rng.standard_normal((batch, *size, cfg.in_channels)))
    t = f32(rng.uniform(size=batch))
    cond = {"class": jnp.arange(batch, dtype=jnp.int32) % (N_CLASSES + 1),  # id 3 = null row
            "vector": f32(rng.standard_normal((batch, COND_DIM)))}
    return x, t, cond


@nnx.jit
def _outputs(model, x, t, conds):
    """``model(x, t, c)`` for every c of ``conds`` (a tuple), in one compiled program."""
    return tuple(model(x, t, c) for c in conds)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("overrides, field", [
    (dict(input_size=9), "input_size"),
    (dict(spatial_dims=3), "spatial_dims"),
    (dict(dim=30, num_heads=4), "dim"),
    (dict(dim=20, num_heads=2), "head_dim"),  # 10 dims do not split into 2 axes of pairs
    (dict(num_classes=-1), "num_classes"),
    (dict(cond_dropout=1.0), "cond_dropout"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(rope_base=1.0), "rope_base"),
    (dict(dtype="int8"), "dtype"),
    (dict(depth=0), "depth"),
])
def test_config_rejects_invalid_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        DiTConfig.tiny(**overrides)


def test_config_sizes_and_presets():
    s2 = DiTConfig.sized("S")
    assert (s2.dim, s2.depth, s2.num_heads, s2.patch_size) == (384, 12, 6, 2)
    assert DiTConfig.tiny(spatial_dims=1, input_size=16).latent_shape == (16, 4)
    assert DiTConfig.tiny().patch_dim == 2 * 2 * 4
    with pytest.raises(ValueError, match="unknown DiT size"):
        DiTConfig.sized("M")


def test_config_module_does_not_import_jax():
    code = ("import sys, worldmodel.diffusion.dit_config; "
            "print([m for m in ('jax', 'flax') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ shapes and errors


@pytest.mark.parametrize("spatial_dims, size", [(2, (8, 6)), (1, (10,))])
def test_output_shape_matches_input_for_both_layouts(spatial_dims, size):
    cfg = _cfg(spatial_dims)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg, size=size)  # not input_size: RoPE takes any multiple of p
    (y,) = _outputs(model, x, t, (cond,))
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert np.isfinite(np.asarray(y)).all()


def test_rejects_sizes_layouts_and_conditions_it_cannot_take():
    cfg = _cfg(2)
    model = DiT(cfg, rngs=nnx.Rngs(0))
    t = jnp.zeros((2,))
    with pytest.raises(ValueError, match="multiples of patch_size=2"):
        model(jnp.zeros((2, 7, 8, 4)), t)
    with pytest.raises(ValueError, match=r"expects \[B, H, W, C\]"):
        model(jnp.zeros((2, 8, 4)), t)  # a sequence into an image model
    with pytest.raises(ValueError, match="C=4"):
        model(jnp.zeros((2, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="t must be"):
        model(jnp.zeros((2, 8, 8, 4)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="unknown condition keys"):
        model(jnp.zeros((2, 8, 8, 4)), t, {"label": jnp.zeros((2,), jnp.int32)})
    with pytest.raises(ValueError, match="cond_dim"):
        model(jnp.zeros((2, 8, 8, 4)), t, {"vector": jnp.zeros((2, 7))})
    with pytest.raises(ValueError, match="valid must be"):
        model(jnp.zeros((2, 8, 8, 4)), t, valid=jnp.ones((2, 8), bool))
    unconditioned = DiT(DiTConfig.tiny(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes=0"):
        unconditioned(jnp.zeros((2, 8, 8, 4)), t, {"class": jnp.zeros((2,), jnp.int32)})


def test_params_carry_logical_axes():
    for scan in (True, False):
        assert_params_have_axes(DiT(_cfg(2, qk_norm=True, scan_layers=scan), rngs=nnx.Rngs(0)))


# ------------------------------------------------------------------ initialisation


def test_output_is_zero_and_every_block_the_identity_at_init():
    cfg = _cfg(2, scan_layers=False)
    model = DiT(cfg, rngs=nnx.Rngs(0))
    x, t, cond = _inputs(cfg)

    @nnx.jit
    def run(model, x, t, cond):
        c = jax.nn.silu(model.condition(t, cond))
        h = model.patch_embed(_patchify(x, cfg.patch_size))
        pos = patch_positions((4, 4))
        return model(x, t, cond), h, [block(h, c, pos) for block in model.blocks]

    y, h, block_outs = run(model, x, t, cond)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    assert np.abs(np.asarray(h)).max() > 0
    for out in block_outs:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(h))


def test_scanned_blocks_equal_the_unrolled_list():
    loop = _perturb(DiT(_cfg(2, scan_layers=False), rngs=nnx.Rngs(0)))
    scan = DiT(_cfg(2, scan_layers=True), rngs=nnx.Rngs(1))
    # Values copied path by path: the scanned Params keep their 'layers' axis metadata.
    per_block = [dict(nnx.to_flat_state(nnx.state(b, nnx.Param))) for b in loop.blocks]
    stacked = nnx.state(scan.blocks, nnx.Param)
    for path, var in nnx.to_flat_state(stacked):
        var[...] = jnp.stack([p[path][...] for p in per_block])
    nnx.update(scan.blocks, stacked)
    for name in ("patch_embed", "time_embed", "class_embed", "vector_embed", "final"):
        nnx.update(getattr(scan, name), nnx.state(getattr(loop, name), nnx.Param))
    x, t, cond = _inputs(loop.cfg)

    @nnx.jit
    def both(a, b):
        return a(x, t, cond), b(x, t, cond)

    y_loop, y_scan = both(loop, scan)
    assert np.abs(np.asarray(y_loop)).max() > 0.1
    assert_close(y_scan, y_loop)


# ------------------------------------------------------------------ jit + grad


@pytest.mark.parametrize("spatial_dims, qk_norm", [(2, False), (1, True)])
def test_jit_grad_finite_and_nonzero_for_every_parameter(spatial_dims, qk_norm):
    cfg = _cfg(spatial_dims, qk_norm=qk_norm)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg, batch=4)  # class ids 0, 1, 2 and the null row 3
    target = jnp.asarray(np.random.default_rng(9).standard_normal(x.shape), jnp.float32)

    @nnx.jit
    def loss_and_grads(model):
        return nnx.value_and_grad(lambda m: jnp.mean(jnp.square(m(x, t, cond) - target)))(model)

    loss, grads = loss_and_grads(model)
    assert np.isfinite(float(loss))
    flat = nnx.to_flat_state(grads)
    assert len(flat) == len(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, g in flat:
        g = np.asarray(g[...])
        assert np.isfinite(g).all(), path
        assert np.abs(g).max() > 0, path


# ------------------------------------------------------------------ RoPE


def test_patch_positions_are_the_patchify_order_and_round_trip():
    p, grid = 2, (3, 4)
    rows, cols = np.meshgrid(np.arange(6), np.arange(8), indexing="ij")
    # Every pixel holds 100 * (its patch row) + (its patch column), in all 3 channels.
    x = np.broadcast_to((100 * (rows // p) + cols // p)[None, :, :, None], (1, 6, 8, 3))
    tokens = np.asarray(_patchify(jnp.asarray(x, jnp.float32), p))  # [1, 12, 12]
    pos = np.asarray(patch_positions(grid))
    np.testing.assert_array_equal(pos[:5], [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]])
    np.testing.assert_array_equal(tokens[0], np.broadcast_to(
        (100 * pos[:, 0] + pos[:, 1])[:, None], (12, 12)))
    np.testing.assert_array_equal(_unpatchify(jnp.asarray(tokens), grid, p), x)
    seq = jnp.asarray(np.random.default_rng(0).standard_normal((2, 10, 3)), jnp.float32)
    np.testing.assert_array_equal(_unpatchify(_patchify(seq, p), (5,), p), seq)
    np.testing.assert_array_equal(patch_positions((5,))[:, 0], np.arange(5))


def _rope_reference(x: np.ndarray, pos: np.ndarray, base: float) -> np.ndarray:
    """Axial RoPE in float64 complex numbers: chunk a of each head (``m = D / A`` dims) pairs
    dims ``(j, j + m/2)`` into ``z_j`` and multiplies it by ``exp(i pos_a base^(-2j/m))``."""
    x = np.asarray(x, np.float64)
    n_axes = pos.shape[-1]
    m = x.shape[-1] // n_axes
    out = []
    for a in range(n_axes):
        chunk = x[..., a * m:(a + 1) * m]
        z = chunk[..., : m // 2] + 1j * chunk[..., m // 2:]
        freqs = base ** (-2.0 * np.arange(m // 2) / m)
        z = z * np.exp(1j * pos[:, a][None, :, None, None] * freqs)
        out += [z.real, z.imag]
    # apply_rope's layout per chunk: the real parts, then the imaginary ones
    return np.concatenate([np.concatenate(out[2 * a:2 * a + 2], -1) for a in range(n_axes)], -1)


@pytest.mark.parametrize("grid", [(3, 4), (7,)])
def test_axial_rope_matches_complex_reference(grid):
    pos = patch_positions(grid)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, pos.shape[0], 2, 8)),
                    jnp.float32)
    assert_close(axial_rope(x, pos, 100.0), _rope_reference(x, np.asarray(pos), 100.0))


def test_axial_rope_scores_depend_on_the_2d_offset_only():
    q, k = jnp.asarray(np.random.default_rng(0).standard_normal((2, 1, 1, 1, 16)), jnp.float32)

    @jax.jit
    def rotated_dot(pq, pk):
        return jnp.sum(axial_rope(q, pq[None], 10_000.0) * axial_rope(k, pk[None], 10_000.0))

    score = lambda pq, pk: rotated_dot(jnp.asarray(pq), jnp.asarray(pk))

    base = score((1, 2), (3, 0))
    assert_close(score((5, 7), (7, 5)), base)  # both shifted by (4, 5)
    assert_close(score((0, 0), (2, -2)), base)  # by (-1, -2)
    # Rows and columns are distinct axes: the transposed offset scores differently.
    assert abs(float(score((2, 1), (0, 3)) - base)) > 1e-3


def test_model_output_depends_on_patch_positions():
    """Without positions a transformer over patches is permutation-equivariant: swapping two
    patches of the input would swap them in the output. With RoPE it does not."""
    cfg = _cfg(2)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg, batch=1)
    swap = lambda a: a.at[:, 0:2, 0:2].set(a[:, 6:8, 6:8]).at[:, 6:8, 6:8].set(a[:, 0:2, 0:2])
    xs = jnp.concatenate([x, swap(x)])
    cond2 = jax.tree.map(lambda c: jnp.concatenate([c, c]), cond)
    (y,) = _outputs(model, xs, jnp.concatenate([t, t]), (cond2,))
    y, y_swapped = np.asarray(y[:1]), np.asarray(swap(y[1:]))
    assert np.abs(y_swapped - y).max() > 1e-2 * np.abs(y).max()


# ------------------------------------------------------------------ conditioning


def test_class_and_vector_conditioning_change_the_output():
    cfg = _cfg(2)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg, batch=1)
    rep = lambda a: jnp.concatenate([a] * 3)
    v, w = cond["vector"], _inputs(cfg, batch=1, seed=5)[2]["vector"]
    both = {"class": jnp.asarray([0, 1, 0], jnp.int32), "vector": jnp.concatenate([v, v, w])}
    (y,) = _outputs(model, rep(x), rep(t), (both,))
    y = np.asarray(y)
    scale = np.abs(y).max()
    assert np.abs(y[1] - y[0]).max() > 1e-2 * scale  # class 0 -> 1
    assert np.abs(y[2] - y[0]).max() > 1e-2 * scale  # vector v -> w


def test_cond_none_is_the_explicit_null_condition_and_bad_ids_are_nan():
    cfg = _cfg(1)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, _ = _inputs(cfg)
    b = x.shape[0]
    conds = (None, {}, null_condition(cfg, b),
             {"class": jnp.full((b,), NULL_CLASS, jnp.int32)},  # vector absent: zeros
             {"class": jnp.full((b,), N_CLASSES, jnp.int32), "vector": jnp.ones((b, COND_DIM))},
             {"class": jnp.asarray([-2, N_CLASSES + 1, 0], jnp.int32)})  # bad, bad, fine
    y_none, y_empty, y_null, y_class_only, y_other, y_bad = map(
        np.asarray, _outputs(model, x, t, conds))
    assert np.abs(y_none).max() > 0.1
    np.testing.assert_array_equal(y_empty, y_none)
    np.testing.assert_array_equal(y_null, y_none)
    np.testing.assert_array_equal(y_class_only, y_none)
    assert np.abs(y_other - y_none).max() > 1e-3  # a non-zero vector is not the null one
    # Ids outside [0, num_classes] (other than NULL_CLASS) are NaN, not a wrapped real class.
    assert np.isnan(y_bad[:2]).all() and np.isfinite(y_bad[2]).all()


def test_dropped_condition_is_the_null_condition_of_the_model():
    """``conditioning.drop_condition`` writes ``NULL_CLASS`` and zeros: at p = 1 the DiT's
    output is that of ``cond=None``, at p = 0 that of ``cond``; an example drops whole."""
    cfg = _cfg(1)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg)
    key = jax.random.key(0)
    dropped = drop_condition(cond, key, 1.0)
    np.testing.assert_array_equal(dropped["class"], NULL_CLASS)
    conds = (None, cond, dropped, drop_condition(cond, key, 0.0))
    y_none, y_cond, y_dropped, y_kept = map(np.asarray, _outputs(model, x, t, conds))
    np.testing.assert_array_equal(y_dropped, y_none)
    np.testing.assert_array_equal(y_kept, y_cond)
    assert np.abs(y_cond - y_none).max() > 1e-3


def test_guided_flow_sampling_smoke_under_jit():
    cfg = _cfg(2)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x1, _, cond = _inputs(cfg, batch=2)
    cond = {"class": jnp.asarray([0, 2], jnp.int32), "vector": cond["vector"]}

    @nnx.jit
    def run(model, x1, cond):
        fn = lambda x, t, c: model(x, t, c)  # closed over inside the sampler's fori_loop
        two_calls = sample(FlowMatching(), guided(fn, 2.0), x1, steps=2, cond=cond)
        one_batch = sample(FlowMatching(), guided(fn, 2.0, null_condition(cfg)), x1,
                           steps=2, cond=cond)
        return two_calls, one_batch

    two_calls, one_batch = run(model, x1, cond)
    assert two_calls.shape == x1.shape and np.isfinite(np.asarray(two_calls)).all()
    assert np.abs(np.asarray(two_calls - x1)).max() > 0.1
    assert_close(one_batch, two_calls)


# ------------------------------------------------------------------ padding and dtype


def test_sequence_padding_does_not_reach_valid_frames():
    cfg = _cfg(1)
    model = _perturb(DiT(cfg, rngs=nnx.Rngs(0)))
    x, t, cond = _inputs(cfg, batch=2)
    valid = jnp.ones((2, 8), bool).at[0, :4].set(False)  # left padding of 2 patches
    garbage = x.at[0, :4].set(100.0)

    @nnx.jit
    def run(model):
        return model(x, t, cond, valid=valid), model(garbage, t, cond, valid=valid)

    y, y_garbage = map(np.asarray, run(model))
    np.testing.assert_array_equal(y_garbage[0, 4:], y[0, 4:])
    np.testing.assert_array_equal(y_garbage[1], y[1])


def test_bfloat16_compute_follows_float32():
    f32 = _perturb(DiT(_cfg(2), rngs=nnx.Rngs(0)))
    bf16 = DiT(_cfg(2, dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(bf16, nnx.state(f32, nnx.Param))
    x, t, cond = _inputs(f32.cfg)

    @nnx.jit
    def both(a, b):
        return a(x, t, cond), b(x, t, cond)

    y32, y16 = both(f32, bf16)
    assert y16.dtype == jnp.bfloat16
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 2e-3 per op); two blocks of
    # matmuls and norms compound to ~1e-2, so 3e-2 of the output's scale.
    assert_close(y16.astype(jnp.float32), y32, rtol=3e-2)
