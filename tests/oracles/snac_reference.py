"""PyTorch oracle for tokenizer.snac (runs in the oracle environment, not the uv one).

    python snac_reference.py CONFIG_JSON INPUTS_NPZ OUT_DIR [--seed S]
        [--format bin|safetensors|legacy-bin] [--load WEIGHTS] [--save-only]

Builds ``snac.SNAC(**config)`` exactly as the published models are built (noise blocks
on) with every parameter randomised (not just torch's default init: Snake alphas,
weight-norm gains and biases are perturbed too, so a transposed or misplaced tensor
cannot hide) and saves it as the package publishes it: ``config.json`` +
``pytorch_model.bin`` or ``model.safetensors`` (``legacy-bin``: a ``.bin`` whose
weight-norm tensors carry the old ``weight_g`` / ``weight_v`` names of
``torch.nn.utils.weight_norm``). With ``--load WEIGHTS`` it loads those weights instead
(``load_state_dict(strict=True)``: every key present, none extra) and saves nothing;
``--save-only`` writes the weights and runs nothing.

The package's ``NoiseBlock`` draws ``torch.randn`` on every call, even in eval, with no
switch. For a deterministic comparison the blocks are patched: the plain outputs run
with zero draws (what our decoder computes with ``key=None``), and one decode per
input runs with real draws, recorded in the order the blocks use them.

For each waveform ``x_<i>`` ``[B, N]`` of INPUTS_NPZ it writes to
``OUT_DIR/outputs.npz``: ``codes_<i>_<l>`` (encode), ``recon_<i>`` (forward, cut to N),
``decoded_<i>`` (decode of the codes), ``noisy_<i>`` (decode with noise) and
``noise_<i>_<k>`` (the k-th block's draws ``[B, 1, T_k]``).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from snac import SNAC
from snac.layers import NoiseBlock

_NOISE = {"mode": "zero", "draws": []}


def _noise_forward(self, x):
    b, _, t = x.shape
    if _NOISE["mode"] == "zero":
        return x + torch.zeros((b, 1, t), dtype=x.dtype) * self.linear(x)
    noise = torch.randn((b, 1, t), dtype=x.dtype)
    _NOISE["draws"].append(noise[:].numpy().copy())
    return x + noise * self.linear(x)


NoiseBlock.forward = _noise_forward


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("alpha"):  # Snake frequencies stay positive
                param.mul_(torch.exp(0.3 * torch.randn_like(param)))
            elif name.endswith("original0"):  # weight-norm gains
                param.mul_(torch.exp(0.2 * torch.randn_like(param)))
            elif name.endswith(".bias") or "norm." in name:
                param.add_(0.05 * torch.randn_like(param))


def _save(state: dict, out: Path, fmt: str) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, out / "model.safetensors")
        return
    if fmt == "legacy-bin":
        state = {k.replace("parametrizations.weight.original0", "weight_g")
                  .replace("parametrizations.weight.original1", "weight_v"): v
                 for k, v in state.items()}
    torch.save(state, out / "pytorch_model.bin")


def _load(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, weights_only=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("bin", "safetensors", "legacy-bin"), default="bin")
    p.add_argument("--load", default=None)
    p.add_argument("--save-only", action="store_true", help="write the weights, run nothing")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    config = json.loads(Path(args.config).read_text())
    model = SNAC(**config).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.load:
        model.load_state_dict(_load(args.load), strict=True)
    else:
        _randomise(model)
        (out / "config.json").write_text(json.dumps(config))
        _save(model.state_dict(), out, args.format)
        if args.save_only:
            return
    results = {}
    with np.load(args.inputs) as inputs, torch.inference_mode():
        for key in sorted(inputs.files):
            i = key.split("_", 1)[1]
            x = torch.from_numpy(np.asarray(inputs[key], np.float32))[:, None, :]
            _NOISE["mode"] = "zero"
            recon, codes = model(x)
            for lvl, c in enumerate(model.encode(x)):
                results[f"codes_{i}_{lvl}"] = c.numpy().astype(np.int32)
            assert all(torch.equal(a, b) for a, b in zip(codes, model.encode(x), strict=True))
            results[f"recon_{i}"] = recon[:, 0].numpy()
            results[f"decoded_{i}"] = model.decode(codes)[:, 0].numpy()
            if config.get("noise", True):
                _NOISE["mode"], _NOISE["draws"] = "draw", []
                results[f"noisy_{i}"] = model.decode(codes)[:, 0].numpy()
                for k, n in enumerate(_NOISE["draws"]):
                    results[f"noise_{i}_{k}"] = n
    np.savez(out / "outputs.npz", **results)


if __name__ == "__main__":
    main()
