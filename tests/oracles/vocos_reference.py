"""PyTorch oracle for worldmodel.audio.vocoder (runs in the oracle environment).

    python vocos_reference.py CONFIG_JSON INPUTS_NPZ OUT_DIR [--seed S]

Builds the original ``VocosBackbone`` + ``ISTFTHead`` of ``vocos==0.1.0`` from
CONFIG_JSON (``{"backbone": {...}, "head": {...}}``: the published mel model's
``input_channels 100, dim 512, intermediate_dim 1536, num_layers 8`` and ``n_fft 1024,
hop_length 256, padding "same"``, or other sizes) with every parameter randomised
(layer scales and norms too, so a misplaced tensor cannot hide), saves the state dict
as ``vocos.Vocos`` names it (``backbone.*``, ``head.*``, plus the feature extractor's
buffers the published checkpoint carries) to ``OUT_DIR/pytorch_model.bin``, and writes
``OUT_DIR/outputs.npz``: ``wav_<name>`` = ``head(backbone(mel))`` for each ``mel_<name>``
``[B, n_mels, T]`` of INPUTS_NPZ.

Imports: ``vocos/__init__.py`` imports ``vocos.pretrained`` (encodec, huggingface-hub)
and ``vocos/heads.py`` imports torchaudio for ``_hz_to_mel``/``_mel_to_hz``, used only
by ``IMDCTSymExpHead``. torchaudio's CPU wheels fail to import here (FIELD-NOTES), so
vocos is installed without dependencies, the package's ``__init__`` is bypassed (an empty
``vocos`` package object whose path points at the installed files) and torchaudio's
two names are stubbed: nothing on the ISTFT head's path calls them.
"""

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _import_vocos():
    spec = importlib.util.find_spec("vocos")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("vocos is not installed in the oracle env (scripts/setup_oracle_env.sh)")
    pkg = types.ModuleType("vocos")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["vocos"] = pkg

    def unused(*_args, **_kwargs):
        raise RuntimeError("torchaudio stub: only IMDCTSymExpHead uses it")

    for name in ("torchaudio", "torchaudio.functional", "torchaudio.functional.functional"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchaudio.functional.functional"]._hz_to_mel = unused
    sys.modules["torchaudio.functional.functional"]._mel_to_hz = unused
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    return VocosBackbone, ISTFTHead


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):  # layer scales: around their init, per channel
                p.mul_(torch.exp(0.5 * torch.randn_like(p)))
            elif "norm" in name and name.endswith("weight"):
                p.mul_(torch.exp(0.2 * torch.randn_like(p)))
            elif name.endswith("bias"):
                p.add_(0.05 * torch.randn_like(p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    VocosBackbone, ISTFTHead = _import_vocos()
    cfg = json.loads(Path(args.config).read_text())
    backbone, head = VocosBackbone(**cfg["backbone"]), ISTFTHead(**cfg["head"])
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).eval()
    _randomise(model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # The published checkpoint also holds the mel front end's buffers (skipped on import).
    state["feature_extractor.mel_spec.spectrogram.window"] = torch.hann_window(1024)
    state["feature_extractor.mel_spec.mel_scale.fb"] = torch.rand(513, 100)
    torch.save(state, out / "pytorch_model.bin")
    results = {}
    with np.load(args.inputs) as z, torch.no_grad():
        for key in z.files:
            mel = torch.from_numpy(z[key].astype(np.float32))
            results["wav_" + key.removeprefix("mel_")] = head(backbone(mel)).numpy()
    np.savez(out / "outputs.npz", **results)


if __name__ == "__main__":
    main()
