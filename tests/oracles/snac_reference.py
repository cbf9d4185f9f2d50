"""PyTorch oracle for tokenizer.snac (runs in the oracle environment, not the uv one).

    python snac_reference.py CONFIG_JSON INPUTS_NPZ OUT_DIR [--seed S] [--format bin|safetensors]

Builds ``snac.SNAC(**config)`` with every parameter randomised (not just torch's default
init: Snake alphas, weight-norm gains and biases are perturbed too, so a transposed or
misplaced tensor cannot hide), saves it as the package publishes it (``config.json`` +
``pytorch_model.bin`` or ``model.safetensors``) and, for each waveform ``x_<i>``
``[B, N]`` of INPUTS_NPZ, writes to ``OUT_DIR/outputs.npz``: ``codes_<i>_<l>`` (encode),
``recon_<i>`` (forward, cut to N) and ``decoded_<i>`` (decode of the codes).
The config must have ``noise: false``: the package's noise blocks draw ``torch.randn`` on
every call.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from snac import SNAC


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("bin", "safetensors"), default="bin")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    config = json.loads(Path(args.config).read_text())
    assert not config.get("noise", True), "the oracle needs noise: false"
    model = SNAC(**config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("alpha"):  # Snake frequencies stay positive
                param.mul_(torch.exp(0.3 * torch.randn_like(param)))
            elif name.endswith("original0"):  # weight-norm gains
                param.mul_(torch.exp(0.2 * torch.randn_like(param)))
            elif name.endswith(".bias") or "norm." in name:
                param.add_(0.05 * torch.randn_like(param))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    state = model.state_dict()
    if args.format == "bin":
        torch.save(state, out / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, out / "model.safetensors")
    results = {}
    with np.load(args.inputs) as inputs, torch.inference_mode():
        for key in sorted(inputs.files):
            i = key.split("_", 1)[1]
            x = torch.from_numpy(np.asarray(inputs[key], np.float32))[:, None, :]
            recon, codes = model(x)
            for lvl, c in enumerate(model.encode(x)):
                results[f"codes_{i}_{lvl}"] = c.numpy().astype(np.int32)
            assert all(torch.equal(a, b) for a, b in zip(codes, model.encode(x), strict=True))
            results[f"recon_{i}"] = recon[:, 0].numpy()
            results[f"decoded_{i}"] = model.decode(codes)[:, 0].numpy()
    np.savez(out / "outputs.npz", **results)


if __name__ == "__main__":
    main()
