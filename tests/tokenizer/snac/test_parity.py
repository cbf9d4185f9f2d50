"""SNAC against the PyTorch ``snac`` package (1.2.1) with random weights, noise off.

The oracle (tests/oracles/snac_reference.py, in the oracle environment) builds
``snac.SNAC`` from a published config with every parameter randomised, saves the weights
as published (``pytorch_model.bin`` for 24 kHz, ``model.safetensors`` for 32 kHz) and
runs encode / forward / decode; we convert those files without torch and compare: codes
exactly, audio to 1e-4 (a complex module: ~40 conv layers and attention).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.audio.io import resample
from common.data.espeak import SAMPLE_RATE, Voice, synthesize
from common.train.torch_weights import load_torch_state_dict
from tests.oracle import require_oracle, run_oracle
from tokenizer.snac.config import MODEL_PRESETS
from tokenizer.snac.model import SNAC
from tokenizer.snac.pytorch_weights import (
    DERIVED,
    ConversionError,
    load_pretrained,
    load_state_dict,
    to_state_dict,
)

AUDIO_TOL = 1e-4
# One worker for the module: each oracle case (a torch run and a conversion) is built
# once, not once per worker that draws one of its tests.
pytestmark = [pytest.mark.oracle, pytest.mark.slow, pytest.mark.xdist_group("snac_parity")]


def _speech(sr: int, n: int) -> np.ndarray:
    wav = resample(synthesize("The quick brown fox jumps over the lazy dog.",
                              Voice("en-us")), SAMPLE_RATE, sr)
    wav = np.pad(wav, (0, max(0, n - wav.size)))[:n]
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="module", params=[("24khz", "bin"), ("32khz", "safetensors")],
                ids=["24khz", "32khz"])
def case(request, tmp_path_factory):
    """``(config, our converted model, oracle outputs, inputs, weights dir)``."""
    require_oracle()
    preset, fmt = request.param
    cfg = dataclasses.replace(MODEL_PRESETS[preset], noise=False)
    d = tmp_path_factory.mktemp(f"snac_{preset}")
    rng = np.random.default_rng(0)
    m = cfg.pad_multiple
    if preset == "24khz":  # random and speech, one with a length needing padding
        inputs = {"x_0": rng.uniform(-0.5, 0.5, (2, 2 * m - 777)).astype(np.float32),
                  "x_1": _speech(cfg.sampling_rate, 3 * m)[None]}
    else:  # the big music model: one window-sized speech clip keeps the test short
        inputs = {"x_0": _speech(cfg.sampling_rate, m)[None]}
    np.savez(d / "inputs.npz", **inputs)
    (d / "config.json").write_text(json.dumps(cfg.published()))
    run_oracle("snac_reference.py", str(d / "config.json"), str(d / "inputs.npz"),
               str(d / "weights"), "--format", fmt)
    model = load_pretrained(d / "weights")
    with np.load(d / "weights" / "outputs.npz") as z:
        ref = dict(z)
    return cfg, model, ref, inputs, d / "weights"


def test_codes_and_audio_match_pytorch(case):
    cfg, model, ref, inputs, _ = case
    assert model.cfg == cfg
    fwd = nnx.jit(lambda m, w: m(w))
    dec = nnx.jit(lambda m, c: m.decode(c))
    for key, x in inputs.items():
        i = key.split("_")[1]
        out = fwd(model, jnp.asarray(x)[..., None])
        assert len(out.codes) == len(cfg.vq_strides)
        for lvl, c in enumerate(out.codes):
            want = ref[f"codes_{i}_{lvl}"]
            assert c.shape == want.shape == (x.shape[0], cfg.code_lengths(x.shape[1])[lvl])
            np.testing.assert_array_equal(np.asarray(c), want, err_msg=f"{key} level {lvl}")
        assert out.recon.shape == (*x.shape, 1)
        np.testing.assert_allclose(np.asarray(out.recon)[..., 0], ref[f"recon_{i}"],
                                   rtol=0, atol=AUDIO_TOL)
        codes = [jnp.asarray(ref[f"codes_{i}_{lvl}"]) for lvl in range(len(cfg.vq_strides))]
        audio = dec(model, codes)
        assert audio.shape == (x.shape[0], cfg.padded_length(x.shape[1]), 1)
        np.testing.assert_allclose(np.asarray(audio)[..., 0], ref[f"decoded_{i}"],
                                   rtol=0, atol=AUDIO_TOL)
        encoded = nnx.jit(lambda m, w: m.encode(w))(model, jnp.asarray(x)[..., None])
        for a, b in zip(encoded, out.codes, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_state_dict_round_trip_is_exact(case):
    """Ours -> PyTorch layout gives back the published parameters bit for bit. The RoPE
    frequency buffer is not a parameter: we recompute it, and numpy's float32 ``pow``
    may round its last bit differently from torch's."""
    _, model, _, _, weights = case
    files = [p for p in weights.iterdir() if p.suffix in (".bin", ".safetensors")]
    original = load_torch_state_dict(files[0])
    back = to_state_dict(model)
    assert set(back) == set(original)
    for k, v in original.items():
        if k.endswith(DERIVED):
            np.testing.assert_allclose(back[k], v, rtol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(back[k], np.asarray(v, np.float32), err_msg=k)


def test_conversion_errors_name_the_tensors(case):
    cfg, _, _, _, weights = case
    files = [p for p in weights.iterdir() if p.suffix in (".bin", ".safetensors")]
    sd = dict(load_torch_state_dict(files[0]))
    target = SNAC(dataclasses.replace(MODEL_PRESETS["tiny"], noise=False), rngs=nnx.Rngs(0))
    with pytest.raises(ConversionError, match="shape"):
        load_state_dict(target, sd)  # the tiny model is narrower
    sd["encoder.extra.weight"] = np.zeros(3, np.float32)
    model = SNAC(cfg, rngs=nnx.Rngs(0))
    with pytest.raises(ConversionError, match=r"encoder\.extra\.weight"):
        load_state_dict(model, sd)
    sd.pop("encoder.extra.weight")
    sd.pop("decoder.model.0.bias")
    with pytest.raises(ConversionError, match=r"decoder\.model\.0\.bias"):
        load_state_dict(model, sd)


def test_converted_parameters_are_float32(case):
    """Every converted parameter is a float32 array (no float64 from numpy)."""
    _, model, _, _, _ = case
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert leaves and all(x.dtype == jnp.float32 for x in leaves)
