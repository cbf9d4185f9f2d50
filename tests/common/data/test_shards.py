"""Example serialisation, shard writing and the random-access ShardSource."""

import math
import pickle

import grain
import ml_dtypes
import numpy as np
import pytest

from common.data import shards
from common.data.shards import ShardError, ShardSource, ShardWriter, deserialize, serialize


def _arrays(rng):
    return {
        "f16": rng.standard_normal((3, 5)).astype(np.float16),
        "f32": rng.standard_normal((7, 80)).astype(np.float32),
        "f64": np.array([np.nan, np.inf, -np.inf, -0.0, 1e-308]),
        "i8": np.array([-128, 127], np.int8),
        "i16": rng.integers(-2**15, 2**15, 9).astype(np.int16),
        "i32": np.arange(5, dtype=np.int32),
        "i64": np.array([-2**63, 2**63 - 1]),
        "u8": np.arange(256, dtype=np.uint8),
        "u16": np.array([65535], np.uint16),
        "u32": np.array([2**32 - 1], np.uint32),
        "u64": np.array([2**64 - 1], np.uint64),
        "bool": rng.random(11) > 0.5,
        "c64": (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64),
        "c128": np.array([1 + 2j, np.nan * 1j]),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "unicode": np.array(["ab", "ˈæ", ""]),
        "bf16": rng.standard_normal(6).astype(ml_dtypes.bfloat16),
        "scalar0d": np.array(3.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "strided": np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2],
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
    }


def test_round_trip_is_exact_for_every_dtype(rng):
    arrays = _arrays(rng)
    example = {**arrays, "text": "ˈhɛloʊ wɜːld ✓ \ud800", "empty_str": "", "n": 2**70,
               "neg": -3, "x": 0.1, "nan": math.nan, "neg_zero": -0.0, "inf": math.inf,
               "flag": True, "none": None, "blob": b"\x00\xffraw",
               "np_f32": np.float32(1.5), "np_i64": np.int64(-7), "np_bool": np.bool_(True)}
    back = deserialize(serialize(example))
    assert list(back) == list(example)
    for key, want in arrays.items():
        got = back[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), key
        assert got.flags.writeable and got.flags.c_contiguous
    assert back["text"] == example["text"] and back["empty_str"] == ""
    assert back["n"] == 2**70 and type(back["n"]) is int and back["neg"] == -3
    assert back["x"] == 0.1 and math.isnan(back["nan"]) and back["inf"] == math.inf
    assert math.copysign(1.0, back["neg_zero"]) == -1.0
    assert back["flag"] is True and back["none"] is None and back["blob"] == b"\x00\xffraw"
    for key in ("np_f32", "np_i64", "np_bool"):
        assert type(back[key]) is type(example[key]) and back[key] == example[key]


def test_views_without_copy_are_read_only_and_aligned(rng):
    blob = serialize({"a": np.ones(3, np.int8), "b": rng.standard_normal((4, 4))})
    back = deserialize(blob, copy=False)
    assert not back["b"].flags.writeable
    assert back["b"].flags.aligned  # buffers sit at 16-byte offsets
    np.testing.assert_array_equal(back["a"], np.ones(3, np.int8))


def test_unserialisable_values_name_the_key():
    with pytest.raises(TypeError, match="'obj'"):
        serialize({"obj": np.array([{}, None], dtype=object)})
    with pytest.raises(TypeError, match=r"'lst'.*list"):
        serialize({"lst": [1, 2]})
    with pytest.raises(TypeError, match="'rec'"):
        serialize({"rec": np.zeros(2, dtype=[("a", "i4")])})
    with pytest.raises(ShardError, match="does not start"):
        deserialize(b"XXXX\x00\x00\x00\x00")


def _write_dir(tmp_path, counts):
    """Shards with ``counts`` examples each (ids e0, e1, ...) and a matching index."""
    entries, k = [], 0
    for s, count in enumerate(counts):
        name = shards.shard_name(s, len(counts)) + ".array_record"
        with ShardWriter(tmp_path / name) as w:
            for _ in range(count):
                w.write({"id": f"e{k}", "x": np.full((k + 1, 2), k, np.float32)})
                k += 1
            w.commit()
        entries.append({"file": name, "count": count})
    index = {"format": shards.FORMAT, "count": k, "shards": entries,
             "features": {"id": {"shape": [], "dtype": "str"},
                          "x": {"shape": [None, 2], "dtype": "float32"}}}
    shards.write_json(tmp_path / shards.INDEX_FILE, index)
    return k


def test_shard_source_random_access(tmp_path):
    n = _write_dir(tmp_path, [3, 0, 4])  # an empty shard (all records skipped) is fine
    src = ShardSource(tmp_path)
    assert len(src) == n == 7
    assert [src[i]["id"] for i in range(n)] == [f"e{i}" for i in range(n)]
    np.testing.assert_array_equal(src[5]["x"], np.full((6, 2), 5, np.float32))
    assert src[-1]["id"] == "e6"
    assert [e["id"] for e in src.__getitems__([6, 0, 3])] == ["e6", "e0", "e3"]
    with pytest.raises(IndexError):
        src[7]
    assert src.features["x"]["shape"] == [None, 2]
    again = pickle.loads(pickle.dumps(src))  # grain worker processes receive a pickle
    assert again[4]["id"] == "e4"
    assert not list(tmp_path.glob("*.tmp"))


def test_grain_map_dataset_over_shard_source(tmp_path):
    n = _write_dir(tmp_path, [4, 4, 2])
    ds = grain.MapDataset.source(ShardSource(tmp_path)).shuffle(seed=3).map(
        lambda e: {"id": e["id"], "frames": e["x"].shape[0]})
    got = [ds[i] for i in range(len(ds))]
    assert sorted(int(g["id"][1:]) for g in got) == list(range(n))
    assert all(g["frames"] == int(g["id"][1:]) + 1 for g in got)
    assert len(list(ds.to_iter_dataset())) == n


def test_index_mismatch_names_the_file(tmp_path):
    _write_dir(tmp_path, [2, 3])
    index = shards.read_json(tmp_path / shards.INDEX_FILE)
    index["shards"][1]["count"] = 4
    shards.write_json(tmp_path / shards.INDEX_FILE, index)
    with pytest.raises(ShardError, match=r"shard-00001-of-00002\.array_record: holds 3"):
        ShardSource(tmp_path)
    (tmp_path / index["shards"][0]["file"]).unlink()
    with pytest.raises(ShardError, match=r"shard-00000-of-00002\.array_record: listed"):
        ShardSource(tmp_path)
    with pytest.raises(ShardError, match="no index"):
        ShardSource(tmp_path / "nowhere")


def test_writer_publishes_only_on_commit(tmp_path):
    path = tmp_path / "shard-00000-of-00001.array_record"
    with pytest.raises(RuntimeError), ShardWriter(path) as w:
        w.write({"id": "a"})
        assert w.tmp.exists() and not path.exists()
        raise RuntimeError("interrupted")
    assert not w.tmp.exists() and not path.exists()
    with ShardWriter(path) as w:
        w.write({"id": "a"})
        w.commit()
    assert path.exists() and not w.tmp.exists() and shards.num_records(path) == 1
