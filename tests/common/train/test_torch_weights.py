"""common.train.torch_weights: torch-free reading of safetensors and torch.save archives.

The first tests run anywhere; the ``oracle`` ones compare, bit for bit, against
checkpoints that real torch wrote (tests/oracles/torch_save_cases.py in the oracle env).
"""

import json
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from common.train.torch_weights import TorchWeightsError, load_torch_state_dict
from tests.oracle import run_oracle


def test_safetensors_round_trip(tmp_path):
    arrays = {"enc.w": np.arange(12, dtype=np.float32).reshape(3, 4),
              "enc.b": np.array([1, -2], np.int64), "mask": np.array([True, False]),
              "h": np.linspace(0, 1, 5).astype(np.float16)}
    safetensors.numpy.save_file(arrays, tmp_path / "w.safetensors")
    got = load_torch_state_dict(tmp_path / "w.safetensors")
    assert got.keys() == arrays.keys()
    for name, arr in arrays.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
        np.testing.assert_array_equal(got[name], arr)


@pytest.mark.parametrize(("content", "match"), [
    (pickle.dumps({"w": [1.0]}, protocol=2), "legacy torch.save file"),  # as torch < 1.6
    (b"\x00garbage, not a checkpoint", "neither a torch.save zip archive nor a safetensors"),
], ids=["legacy", "garbage"])
def test_unreadable_files_are_named(tmp_path, content, match):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(TorchWeightsError, match=match) as e:
        load_torch_state_dict(path)
    assert str(path) in str(e.value)


def test_zip_without_data_pkl_is_named(tmp_path):
    path = tmp_path / "model.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/other.txt", "x")
    with pytest.raises(TorchWeightsError, match=r"without data\.pkl") as e:
        load_torch_state_dict(path)
    assert str(path) in str(e.value)


# --- against real torch -------------------------------------------------------------

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
              "int64": np.int64, "bool": np.bool_, "uint16": np.uint16,
              "float8_e4m3fn": ml_dtypes.float8_e4m3fn}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_save_cases")
    run_oracle("torch_save_cases.py", str(out), timeout=120)
    return out


def assert_bitwise(got: dict, cases, name: str) -> None:
    """``got`` holds exactly the names, dtypes and bits of case ``name``."""
    dtypes = json.loads((cases / f"{name}.json").read_text())
    with np.load(cases / f"{name}.npz") as npz:
        expected = dict(npz)
    if name == "weights":  # safetensors keeps no order (it sorts by dtype and name)
        assert sorted(got) == sorted(dtypes)
    else:  # torch.save keeps the state dict's order, which module code relies on
        assert list(got) == list(dtypes)
    for key, want in expected.items():
        arr = got[key]
        assert arr.dtype == _NP_DTYPES[dtypes[key]] and arr.shape == want.shape, key
        assert arr.flags.c_contiguous and arr.flags.writeable, key
        if arr.dtype == ml_dtypes.bfloat16:
            arr = arr.astype(np.float32)  # the oracle's exact upcast
        elif dtypes[key].startswith("float8"):
            arr = arr.view(np.uint8)  # float8: compare bits
        assert arr.dtype == want.dtype, key
        assert arr.tobytes() == want.tobytes(), key


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.xdist_group("torch_save_cases")
@pytest.mark.parametrize(("file", "key"), [
    ("tensors.pt", None), ("module.bin", None), ("nested.ckpt", "state_dict"),
    ("weights.safetensors", None),
])
def test_matches_torch_exactly(cases, file, key):
    got = load_torch_state_dict(cases / file, key=key)
    assert_bitwise(got, cases, file.split(".")[0])


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.xdist_group("torch_save_cases")
def test_views_and_weight_norm_keys(cases):
    got = load_torch_state_dict(cases / "tensors.pt")
    # view_row = base[1], view_cols = base[:, 2:5]: one element of one torch storage,
    # and two independent copies of it here.
    assert got["view_cols"][1, 0] == got["view_row"][2]
    got["view_row"][2] += 1
    assert got["view_cols"][1, 0] != got["view_row"][2]
    module = load_torch_state_dict(cases / "module.bin")
    assert module["0.parametrizations.weight.original0"].shape == (4, 1, 1)  # g
    assert module["0.parametrizations.weight.original1"].shape == (4, 3, 5)  # v


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.xdist_group("torch_save_cases")
def test_nested_checkpoint_needs_a_key(cases):
    with pytest.raises(TorchWeightsError, match=r"'epoch' is int; top-level keys: "
                                                r"\['state_dict', 'epoch', 'hyper_parameters'\]"):
        load_torch_state_dict(cases / "nested.ckpt")
    with pytest.raises(TorchWeightsError, match=r"argparse\.Namespace"):
        load_torch_state_dict(cases / "nested.ckpt", key="hyper_parameters")
    with pytest.raises(TorchWeightsError, match="no top-level key 'model'"):
        load_torch_state_dict(cases / "nested.ckpt", key="model")
