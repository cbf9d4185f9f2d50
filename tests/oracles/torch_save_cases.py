"""Oracle for common.train.torch_weights: checkpoints as torch writes them, and their values.

    python tests/oracles/torch_save_cases.py OUT_DIR

Writes, for each case ``<name>.<ext>`` (``tensors.pt``, ``module.bin``, ``nested.ckpt``,
``weights.safetensors``), ``<name>.npz`` with the expected arrays under the names the
reader returns, and ``<name>.json`` mapping each name to its torch dtype (``"float32"``,
...). Values are the exact contents: bfloat16 as its float32 upcast, float8 as its raw
uint8 bits. Runs in the oracle env (torch), never in the main one.
"""

import argparse
import json
import pathlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


def expected(tensors: dict[str, torch.Tensor], out: Path, name: str) -> None:
    """Exact values and dtypes of ``tensors`` into ``<name>.npz`` / ``<name>.json``."""
    arrays, dtypes = {}, {}
    for key, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()  # exact; numpy has no bfloat16
        elif t.dtype.is_floating_point and t.element_size() == 1:
            t = t.view(torch.uint8)  # float8: the bits
        arrays[key] = t.numpy()
        dtypes[key] = str(tensors[key].dtype).removeprefix("torch.")
    np.savez(out / f"{name}.npz", **arrays)
    (out / f"{name}.json").write_text(json.dumps(dtypes))


def tensors_case() -> dict[str, torch.Tensor]:
    """One tensor per dtype and per layout the reader must rebuild."""
    base = torch.randn(4, 6)
    return {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.randint(-(2**40), 2**40, (5,)),
        "bool": torch.rand(4, 2) > 0.5,
        "u16": torch.randint(0, 2**16, (6,), dtype=torch.int32).to(torch.uint16),  # v3
        "f8": torch.randn(5).to(torch.float8_e4m3fn),  # v3: UntypedStorage + dtype global
        "transposed": torch.randn(3, 4).t(),  # non-contiguous
        "view_row": base[1],  # two views of one storage, one at an offset
        "view_cols": base[:, 2:5],
        "scalar": torch.tensor(2.5),  # 0-d
        "param": nn.Parameter(torch.randn(3)),  # torch._utils._rebuild_parameter
    }


def module_case() -> dict[str, torch.Tensor]:
    """A module's state_dict: weight-norm parametrizations, batch norm buffers."""
    model = nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 4, 5)),
        nn.BatchNorm1d(4),
        nn.Linear(4, 2),
    )
    model[:2](torch.randn(2, 3, 9))  # train mode: non-trivial running stats
    return model.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    tensors = tensors_case()
    torch.save(tensors, out / "tensors.pt")
    expected(tensors, out, "tensors")

    module = module_case()
    torch.save(module, out / "module.bin")
    expected(module, out, "module")

    # A training checkpoint: the weights under "state_dict" next to objects the reader
    # must not import (a path, a Namespace), as Lightning writes them.
    ckpt = {"state_dict": module, "epoch": 3,
            "hyper_parameters": argparse.Namespace(lr=1e-3, root=pathlib.PurePosixPath("/x"))}
    torch.save(ckpt, out / "nested.ckpt")
    expected(module, out, "nested")

    weights = {"w": torch.randn(3, 2), "b16": torch.randn(4).bfloat16(),
               "h": torch.randn(2).half(), "n": torch.arange(3)}
    save_file(weights, out / "weights.safetensors")
    expected(weights, out, "weights")


if __name__ == "__main__":
    main()
