"""The DAC residual unit: shapes and axes, masking, depthwise groups, streaming."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tests.helpers import assert_close, assert_params_have_axes
from tokenizer.codec.masks import lengths_to_valid
from tokenizer.codec.residual import ResidualUnit


def test_shapes_mask_and_groups():
    x = jax.random.normal(jax.random.key(0), (2, 20, 4))
    unit = ResidualUnit(4, 3, rngs=nnx.Rngs(0))
    y = unit(x, lengths_to_valid(jnp.array([20, 13]), 20))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(jnp.max(jnp.abs(y[1, :7]))) == 0.0  # padded frames zeroed
    assert_params_have_axes(unit)
    depthwise = ResidualUnit(4, 1, groups=4, rngs=nnx.Rngs(0))
    assert depthwise.conv1.effective_kernel().shape == (7, 1, 4)  # one input channel per group
    assert depthwise(x).shape == x.shape


def test_causal_stream_equals_offline():
    unit = ResidualUnit(4, 9, causal=True, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(1), (2, 24, 4))
    offline = unit(x)
    state, chunks = unit.init_stream(2), []
    for i in range(0, 24, 6):
        y, state = unit.stream(x[:, i:i + 6], state)
        chunks.append(y)
    assert_close(jnp.concatenate(chunks, axis=1), offline, 1e-5)
    # causal: the first frames do not see later samples
    later = x.at[:, 12:].set(0.0)
    np.testing.assert_array_equal(unit(later)[:, :12], offline[:, :12])
