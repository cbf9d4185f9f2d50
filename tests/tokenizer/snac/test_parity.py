"""SNAC against the PyTorch ``snac`` package (1.2.1) with random weights, built exactly as
the published models are (noise blocks on).

The oracle (tests/oracles/snac_reference.py, in the oracle environment) builds
``snac.SNAC`` from each published config with every parameter randomised, saves the
weights as published (``pytorch_model.bin`` for 24 kHz, ``model.safetensors`` for
32 kHz, a ``.bin`` with the legacy ``weight_g`` / ``weight_v`` names for 44 kHz) and runs
encode / forward / decode with the noise blocks' draws at zero, plus one decode with
real draws that it records; we convert those files without torch and compare: codes
exactly, audio to 1e-4 (a complex module: ~40 conv layers and attention), the noisy
decode fed the same draws.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from common.audio.io import resample
from common.data.espeak import SAMPLE_RATE, Voice, synthesize
from common.train.torch_weights import load_torch_state_dict
from tests.oracle import require_oracle, run_oracle
from tokenizer.snac import layers
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
CASES = [("24khz", "bin"), ("32khz", "safetensors"), ("44khz", "legacy-bin")]


def _speech(sr: int, n: int) -> np.ndarray:
    wav = resample(synthesize("The quick brown fox jumps over the lazy dog.",
                              Voice("en-us")), SAMPLE_RATE, sr)
    wav = np.pad(wav, (0, max(0, n - wav.size)))[:n]
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request, tmp_path_factory):
    """``(config, our converted model, oracle outputs, inputs, case dir)``."""
    require_oracle()
    preset, fmt = request.param
    cfg = MODEL_PRESETS[preset]
    assert cfg.noise, "every published model has noise blocks"
    d = tmp_path_factory.mktemp(f"snac_{preset}")
    rng = np.random.default_rng(0)
    m = cfg.pad_multiple
    if preset == "24khz":  # random and speech, one with a length needing padding
        inputs = {"x_0": rng.uniform(-0.5, 0.5, (2, 2 * m - 777)).astype(np.float32),
                  "x_1": _speech(cfg.sampling_rate, 3 * m)[None]}
    else:  # the big music models: one window-sized speech clip keeps the test short
        inputs = {"x_0": _speech(cfg.sampling_rate, m)[None]}
    np.savez(d / "inputs.npz", **inputs)
    (d / "config.json").write_text(json.dumps(cfg.published()))
    run_oracle("snac_reference.py", str(d / "config.json"), str(d / "inputs.npz"),
               str(d / "weights"), "--format", fmt)
    model = load_pretrained(d / "weights")
    with np.load(d / "weights" / "outputs.npz") as z:
        ref = dict(z)
    return cfg, model, ref, inputs, d


def _codes(ref, i, cfg):
    return [jnp.asarray(ref[f"codes_{i}_{lvl}"]) for lvl in range(len(cfg.vq_strides))]


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
        audio = dec(model, _codes(ref, i, cfg))
        assert audio.shape == (x.shape[0], cfg.padded_length(x.shape[1]), 1)
        np.testing.assert_allclose(np.asarray(audio)[..., 0], ref[f"decoded_{i}"],
                                   rtol=0, atol=AUDIO_TOL)
        encoded = nnx.jit(lambda m, w: m.encode(w))(model, jnp.asarray(x)[..., None])
        for a, b in zip(encoded, out.codes, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_noise_blocks_match_pytorch(case, monkeypatch):
    """A decode with noise, our blocks fed the package's recorded draws: the converted
    noise convolutions act as the originals do (the zero-draw outputs above cannot see
    them), and the noise changes the audio well beyond the tolerance."""
    cfg, model, ref, inputs, _ = case
    i = next(iter(inputs)).split("_")[1]
    draws = [ref[f"noise_{i}_{k}"] for k in range(len(cfg.decoder_rates))]
    assert f"noise_{i}_{len(draws)}" not in ref  # one draw per decoder block
    fed = iter(draws)

    def draw(self, key, shape):
        n = next(fed)  # [B, 1, T] as the package draws it
        assert (n.shape[0], n.shape[2], 1) == shape
        return jnp.asarray(n.transpose(0, 2, 1))

    monkeypatch.setattr(layers.NoiseBlock, "draw", draw)
    audio = model.decode(_codes(ref, i, cfg), key=jax.random.key(0))
    assert next(fed, None) is None
    np.testing.assert_allclose(np.asarray(audio)[..., 0], ref[f"noisy_{i}"],
                               rtol=0, atol=AUDIO_TOL)
    assert np.abs(ref[f"noisy_{i}"] - ref[f"decoded_{i}"]).max() > 100 * AUDIO_TOL


def test_state_dict_round_trip_is_exact(case):
    """Ours -> PyTorch layout gives back the published parameters bit for bit (in the
    package's current names, whichever the file used). The RoPE frequency buffer is not
    a parameter: we recompute it, and numpy's float32 ``pow`` may round its last bit
    differently from torch's."""
    _, model, _, _, d = case
    files = [p for p in (d / "weights").iterdir() if p.suffix in (".bin", ".safetensors")]
    original = {k.replace("weight_g", "parametrizations.weight.original0")
                 .replace("weight_v", "parametrizations.weight.original1"): v
                for k, v in load_torch_state_dict(files[0]).items()}
    back = to_state_dict(model)
    assert set(back) == set(original)
    for k, v in original.items():
        if k.endswith(DERIVED):
            np.testing.assert_allclose(back[k], v, rtol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(back[k], np.asarray(v, np.float32), err_msg=k)


def test_state_dict_loads_strictly_into_pytorch(case):
    """``to_state_dict`` saved as safetensors loads into ``snac.SNAC`` with
    ``strict=True`` and reproduces the original model's outputs."""
    _, model, ref, _, d = case
    save_file(to_state_dict(model), str(d / "ours.safetensors"))
    run_oracle("snac_reference.py", str(d / "config.json"), str(d / "inputs.npz"),
               str(d / "reloaded"), "--load", str(d / "ours.safetensors"))
    with np.load(d / "reloaded" / "outputs.npz") as z:
        back = dict(z)
    for k, v in ref.items():
        if k.startswith(("noise_", "noisy_")):
            continue  # fresh draws
        if k.startswith("codes_"):
            np.testing.assert_array_equal(back[k], v, err_msg=k)
        else:
            np.testing.assert_allclose(back[k], v, rtol=0, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("fmt", ["safetensors", "legacy-bin", "bin"])
def test_every_file_format_converts_the_same(case, fmt, tmp_path):
    """The same weights published as ``.bin``, ``.safetensors`` or with the legacy
    weight-norm names convert to the same parameters (the oracle's seed fixes them)."""
    cfg, model, _, _, d = case
    if cfg != MODEL_PRESETS["24khz"]:
        pytest.skip("every format on the 24 kHz model; the others load one each")
    run_oracle("snac_reference.py", str(d / "config.json"), str(d / "inputs.npz"),
               str(tmp_path), "--format", fmt, "--save-only")
    other = load_pretrained(tmp_path)
    for (path, a), (_, b) in zip(jax.tree.leaves_with_path(nnx.state(model, nnx.Param)),
                                 jax.tree.leaves_with_path(nnx.state(other, nnx.Param)),
                                 strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg=jax.tree_util.keystr(path))


def test_conversion_errors_name_every_tensor(case):
    """One error lists every missing, misshaped and unexpected tensor, not the first."""
    cfg, _, _, _, d = case
    files = [p for p in (d / "weights").iterdir() if p.suffix in (".bin", ".safetensors")]
    sd = dict(load_torch_state_dict(files[0]))
    with pytest.raises(ConversionError, match="wrong shape") as e:
        load_state_dict(SNAC("tiny", rngs=nnx.Rngs(0)), sd)  # the tiny model is narrower
    if cfg == MODEL_PRESETS["24khz"]:  # the same layout: only the widths differ
        assert "missing" not in str(e.value) and "no place" not in str(e.value)
    model = SNAC(cfg, rngs=nnx.Rngs(0))
    sd["encoder.extra.weight"] = np.zeros(3, np.float32)
    noise = next(k for k in sd if ".block.2.linear." in k)
    sd.pop(noise)
    bias = sd.pop("decoder.model.0.bias")
    sd["decoder.model.1.bias"] = np.zeros(bias.size + 1, np.float32)
    with pytest.raises(ConversionError) as e:
        load_state_dict(model, sd)
    msg = str(e.value)
    for part in ("2 missing", "decoder.model.0.bias", noise.rsplit(".", 1)[0],
                 "1 of the wrong shape", "decoder.model.1.bias",
                 "1 with no place in the model: encoder.extra.weight"):
        assert part in msg, (part, msg)


def test_converted_parameters_are_float32(case):
    """Every converted parameter is a float32 array (no float64 from numpy)."""
    _, model, _, _, _ = case
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert leaves and all(x.dtype == jnp.float32 for x in leaves)
