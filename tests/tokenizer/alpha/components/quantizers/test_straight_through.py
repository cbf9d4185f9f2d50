"""Straight-through estimators, checked against the identity, and the stage-1 gradient
rule of the two-stage quantizer.

With the input and output projections set to the identity, a quantizer's output is
``q(n(z))`` where ``n`` is its normalisation (``unit_norm`` for VQ and BSQ, FSQ's bound
and scale); straight-through means the upstream gradient reaches ``n(z)`` unchanged, so
``d<g, out>/dz`` must equal ``n``'s vector-Jacobian product with ``g``. A quantizer that
stopped the gradient, or let the quantization's own derivative through, fails here (the
older test only asked for a non-zero gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import assert_close
from tokenizer.alpha.components.quantizers.bsq import BinarySphericalQuantizer
from tokenizer.alpha.components.quantizers.fsq import FiniteScalarQuantizer
from tokenizer.alpha.components.quantizers.rvq import PhonemeBSQ, ResidualVQ
from tokenizer.alpha.components.quantizers.vq import VectorQuantizer, unit_norm

D = 6


def _identity(linear):
    linear.kernel[...] = jnp.eye(D)
    linear.bias[...] = jnp.zeros(D)


def _inputs(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    z = jax.random.normal(k1, (2, 5, D))
    g = jax.random.normal(k2, (2, 5, D))
    valid = jnp.arange(5)[None] >= jnp.array([0, 2])[:, None]
    return z, g, valid


def _grad_z(q, z, g, valid):
    graphdef, state = nnx.split(q)

    def f(z):
        return jnp.sum(g * nnx.merge(graphdef, state)(z, valid).quantized)

    return jax.grad(f)(z)


def _fsq_norm(q):
    scale = jnp.asarray([n // 2 for n in q.levels], jnp.float32)
    return lambda z: q.bound(z) / scale


CASES = {
    "vq": (lambda: VectorQuantizer(D, 16, D, rngs=nnx.Rngs(0)), lambda q: unit_norm),
    "vq_ema": (lambda: VectorQuantizer(D, 16, D, ema=True, rngs=nnx.Rngs(0)),
               lambda q: unit_norm),
    "bsq": (lambda: BinarySphericalQuantizer(D, D, group_size=3, rngs=nnx.Rngs(0)),
            lambda q: unit_norm),
    "fsq": (lambda: FiniteScalarQuantizer(D, (8, 5, 5, 4, 3, 7), rngs=nnx.Rngs(0)), _fsq_norm),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_straight_through_is_the_identity(name):
    build, norm = CASES[name]
    q = build()
    q.eval()  # no EMA update inside the traced gradient (it does not touch the path)
    _identity(q.in_proj)
    _identity(q.out_proj)
    z, g, valid = _inputs()
    _, vjp = jax.vjp(norm(q), z)
    assert_close(_grad_z(q, z, g, valid), vjp(g)[0], 1e-5)


def test_residual_vq_chains_the_identity_through_every_level():
    # Level i sees r_i = r_{i-1} - q_{i-1} (hard codes forward); straight-through gives
    # dq_i/dz = J_i dr_i/dz and dr_{i+1}/dz = dr_i/dz - dq_i/dz, J_i = unit_norm's Jacobian.
    q = ResidualVQ(D, 3, 16, D, rngs=nnx.Rngs(0))
    for level in q.levels:
        _identity(level.in_proj)
        _identity(level.out_proj)
    z, g, valid = _inputs()
    codes = q(z, valid).codes
    got = _grad_z(q, z, g, valid)
    jac = jax.vmap(jax.vmap(jax.jacfwd(unit_norm)))
    r, dr = z, jnp.broadcast_to(jnp.eye(D), (*z.shape[:2], D, D))
    total = jnp.zeros_like(dr)
    for i, level in enumerate(q.levels):
        dq = jnp.einsum("btij,btjk->btik", jac(r), dr)
        total, dr = total + dq, dr - dq
        r = r - level.codes_table()[codes[..., i]]
    assert_close(got, jnp.einsum("btij,bti->btj", total, g), 1e-5)


def _phoneme_bsq(shared=False):
    q = PhonemeBSQ(D, 12, num_bits=D, group_size=3, shared_gradient=shared,
                   rngs=nnx.Rngs(0))
    _identity(q.acoustic.in_proj)
    _identity(q.acoustic.out_proj)
    return q


def _param_grads(q, z, g, valid):
    graphdef, params, rest = nnx.split(q, nnx.Param, ...)

    def f(params):
        return jnp.sum(g * nnx.merge(graphdef, params, rest)(z, valid).quantized)

    return nnx.to_flat_state(jax.grad(f)(params))


STAGE1_SELECTION = ("phoneme/in_proj", "phoneme/codebook", "phoneme/log_scale")


def _norms(grads):
    return {"/".join(map(str, k)): float(jnp.linalg.norm(v[...])) for k, v in grads}


def test_reconstruction_gradient_does_not_reach_stage_1_selection():
    z, g, valid = _inputs()
    norms = _norms(_param_grads(_phoneme_bsq(), z, g, valid))
    for name, n in norms.items():
        if name.startswith(STAGE1_SELECTION):
            assert n == 0.0, name
    # the decoder's embedding of the phoneme code still learns, and stage 2 does
    assert norms["phoneme/out_proj/kernel"] > 0
    assert norms["acoustic/out_proj/kernel"] > 0
    # and the latents get exactly stage 2's straight-through gradient on z - q1
    q = _phoneme_bsq()
    q1 = q.phoneme.decode_codes(q(z, valid).codes[..., 0])
    _, vjp = jax.vjp(lambda z: unit_norm(z - q1), z)
    assert_close(_grad_z(q, z, g, valid), vjp(g)[0], 1e-5)


def test_shared_gradient_option_lets_reconstruction_train_stage_1():
    z, g, valid = _inputs()
    norms = _norms(_param_grads(_phoneme_bsq(shared=True), z, g, valid))
    # (the codebook itself moves only by its codebook loss: straight-through skips it)
    assert norms["phoneme/in_proj/kernel"] > 0


def test_phoneme_bsq_refuses_ema_and_single_stream_decoding():
    with pytest.raises(ValueError, match="EMA"):
        PhonemeBSQ(D, 12, num_bits=D, group_size=3, ema=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="stage 1 alone"):
        _phoneme_bsq().decode_codes(jnp.zeros((1, 3, 1), jnp.int32))


def test_ctc_gradient_reaches_stage_1_selection():
    q = _phoneme_bsq()
    z, _, valid = _inputs()
    graphdef, params, rest = nnx.split(q, nnx.Param, ...)

    def f(params):
        logits = nnx.merge(graphdef, params, rest)(z, valid).logits
        return jnp.sum(jax.nn.log_softmax(logits)[..., 3])

    norms = _norms(nnx.to_flat_state(jax.grad(f)(params)))
    for name in ("phoneme/in_proj/kernel", "phoneme/codebook", "phoneme/log_scale"):
        assert norms[name] > 0, name
    assert np.isfinite(list(norms.values())).all()
