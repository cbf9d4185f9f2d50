"""Vocos against the original (``vocos==0.1.0``, PyTorch) with random weights.

The oracle (tests/oracles/vocos_reference.py, in the oracle environment) builds the
original ``VocosBackbone`` + ``ISTFTHead`` with every parameter randomised and saves the
state dict in ``vocos.Vocos``'s layout (the published ``charactr/vocos-mel-24khz``
checkpoint's keys, feature-extractor buffers included); we convert it without torch
(``worldmodel.audio.vocoder.pytorch_weights``) and compare the waveforms end to end at
1e-4 (a complex module). Cases: the published mel model's structure (100 mels, dim 512,
intermediate 1536, 8 layers, n_fft 1024, hop 256, padding "same") and a small one with
padding "center" and our 16 kHz front end's sizes.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from common.train.torch_weights import load_torch_state_dict
from tests.helpers import assert_close
from tests.oracle import require_oracle, run_oracle
from worldmodel.audio.vocoder.config import VocosConfig
from worldmodel.audio.vocoder.pytorch_weights import state_from_torch

TOL = 1e-4
pytestmark = [pytest.mark.oracle, pytest.mark.slow, pytest.mark.xdist_group("vocos_parity")]
CASES = {
    "published-mel-24khz": VocosConfig(n_mels=100, dim=512, intermediate_dim=1536,
                                       num_layers=8, n_fft=1024, hop_length=256,
                                       padding="same"),
    "small-center-16khz": VocosConfig(n_mels=80, dim=48, intermediate_dim=96, num_layers=3,
                                      n_fft=640, hop_length=160, padding="center"),
}


def _torch_config(cfg: VocosConfig) -> dict:
    return {"backbone": {"input_channels": cfg.n_mels, "dim": cfg.dim,
                         "intermediate_dim": cfg.intermediate_dim,
                         "num_layers": cfg.num_layers},
            "head": {"dim": cfg.dim, "n_fft": cfg.n_fft, "hop_length": cfg.hop_length,
                     "padding": cfg.padding}}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    require_oracle()
    cfg = CASES[request.param]
    d = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng(0)
    # log-mel-like inputs (Vocos's features are natural-log mels, about -11 to 3)
    inputs = {"mel_a": (rng.standard_normal((2, cfg.n_mels, 40)) - 4).astype(np.float32),
              "mel_b": (rng.standard_normal((1, cfg.n_mels, 7)) - 2).astype(np.float32)}
    np.savez(d / "inputs.npz", **inputs)
    (d / "config.json").write_text(json.dumps(_torch_config(cfg)))
    run_oracle("vocos_reference.py", str(d / "config.json"), str(d / "inputs.npz"), str(d))
    state = load_torch_state_dict(d / "pytorch_model.bin")
    with np.load(d / "outputs.npz") as z:
        ref = dict(z)
    return cfg, state, inputs, ref


def test_waveform_matches_the_original(case):
    cfg, state, inputs, ref = case
    model = state_from_torch(state, cfg)
    for name, mel in inputs.items():
        wav, valid = model(jnp.asarray(mel.transpose(0, 2, 1)))
        expected = ref["wav_" + name.removeprefix("mel_")]
        assert wav.shape == expected.shape and bool(valid.all())
        assert_close(wav, expected, TOL)


def test_converter_refuses_incomplete_or_foreign_state_dicts(case):
    cfg, state, _, _ = case
    assert any(k.startswith("feature_extractor.") for k in state)  # skipped, not an error
    partial = {k: v for k, v in state.items() if k != "backbone.convnext.0.gamma"}
    with pytest.raises(KeyError, match="convnext/0/gamma"):
        state_from_torch(partial, cfg)
    with pytest.raises(KeyError, match="unknown keys"):
        state_from_torch({**state, "backbone.extra.weight": np.zeros(3)}, cfg)
