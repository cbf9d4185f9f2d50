"""PatchGAN: its layout (pix2pix's strides and widths) and the masks of left-padded time
rows; one compiled program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn.patchgan import PatchGAN, PatchGANConfig, patch_disc_fn
from tests.helpers import assert_params_have_axes

T, F, PADS = 40, 16, np.array([0, 9, 21])  # time rows, mel bins, left padding per row


def test_layout_masks_and_padding():
    cfg = PatchGANConfig(channels=4, n_layers=2)
    d = PatchGAN(cfg, rngs=nnx.Rngs(0))
    assert_params_have_axes(d)
    # widths double per strided conv, capped at 8x; 4x4 kernels throughout
    assert [c.kernel.shape for c in d.convs] == [(4, 4, 1, 4), (4, 4, 4, 8), (4, 4, 8, 16)]
    assert [c.stride for c in d.convs] == [(2, 2), (2, 2), (1, 1)]
    assert d.post.kernel.shape == (4, 4, 16, 1)
    wide = PatchGAN(PatchGANConfig(channels=2, n_layers=5), rngs=nnx.Rngs(0))
    assert wide.convs[-1].kernel.shape[-1] == 16  # 2 * min(2^5, 8)

    valid = jnp.asarray(np.arange(T)[None] >= PADS[:, None])
    x = jax.random.normal(jax.random.key(0), (3, T, F))

    @jax.jit
    def run(x):
        x = jnp.where(valid[..., None], x, 0.0)  # as the GAN program does
        return patch_disc_fn(d, x, valid), d(x[..., None])  # [B, H, W] = [B, H, W, 1]

    (logits, feats, masks), (logits4, feats4) = run(x)
    (lm,), (fms,) = masks
    assert logits[0].shape == (3, T // 4, F // 4, 1)
    assert [f.shape for f in feats[0]] == [(3, 20, 8, 4), (3, 10, 4, 8), (3, 10, 4, 16)]
    for f, m, hop in zip(feats[0], fms, (2, 4, 4), strict=True):
        assert m.shape == (3, f.shape[1], 1, 1)
        # a row is valid when its whole hop of input rows is
        want = np.arange(f.shape[1])[None] * hop >= PADS[:, None]
        np.testing.assert_array_equal(np.asarray(m)[..., 0, 0], want)
    np.testing.assert_array_equal(lm, fms[-1])
    for a, b in zip(jax.tree.leaves((logits, feats)), jax.tree.leaves(([logits4], [feats4])),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert patch_disc_fn(d, x[:1, :8, :8, None], None)[2] is None


def test_config_errors():
    with pytest.raises(ValueError, match="n_layers"):
        PatchGANConfig(n_layers=0)
    with pytest.raises(ValueError, match=r"disc\.dtype"):
        PatchGANConfig(dtype="bf16")
