"""Left-padding collation, frame masks and length-bucketed batch plans."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from common.data.batching import (
    PAD_INDEX,
    BatchPlan,
    collate_audio,
    frame_valid,
    hop_multiple,
    left_pad_audio,
    left_pad_tokens,
    round_up,
)

# --------------------------------------------------------------------------- collation


def test_left_pad_audio_exact():
    wavs = [np.array([1, 2, 3], np.float32), None, np.arange(1, 6, dtype=np.float32)]
    audio, valid, lengths = left_pad_audio(wavs, 6)
    assert audio.shape == (3, 6, 1) and audio.dtype == np.float32
    np.testing.assert_array_equal(audio[..., 0], [[0, 0, 0, 1, 2, 3],
                                                  [0, 0, 0, 0, 0, 0],
                                                  [0, 1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(valid, [[0, 0, 0, 1, 1, 1], [0] * 6, [0, 1, 1, 1, 1, 1]])
    assert valid.dtype == bool
    np.testing.assert_array_equal(lengths, [3, 0, 5])
    assert lengths.dtype == np.int32
    with pytest.raises(ValueError, match="does not fit"):
        left_pad_audio([np.zeros(7, np.float32)], 6)


def test_frame_valid_is_the_last_ceil_frames():
    lengths = np.array([0, 1, 4, 5, 8])
    np.testing.assert_array_equal(frame_valid(lengths, 8, 4), [[0, 0], [0, 1], [0, 1],
                                                               [1, 1], [1, 1]])
    np.testing.assert_array_equal(frame_valid(lengths, 8, 2), [[0, 0, 0, 0], [0, 0, 0, 1],
                                                               [0, 0, 1, 1], [0, 1, 1, 1],
                                                               [1, 1, 1, 1]])


def test_collate_audio_masks_per_hop():
    rng = np.random.default_rng(0)
    lens = [480, 1, 960, 0]
    wavs = [rng.standard_normal(n).astype(np.float32) if n else None for n in lens]
    hops = (320, 480)
    n = round_up(1000, hop_multiple(hops))
    assert n == 1920
    b = collate_audio(wavs, n, hops)
    assert set(b) == {"audio", "audio_valid", "audio_lengths", "valid_320", "valid_480"}
    assert b["valid_320"].shape == (4, 6) and b["valid_480"].shape == (4, 4)
    np.testing.assert_array_equal(b["valid_320"].sum(1), [2, 1, 3, 0])
    np.testing.assert_array_equal(b["valid_480"].sum(1), [1, 1, 2, 0])
    # the valid frames are the last ones, and cover every valid sample
    for h in hops:
        frames = b["audio_valid"].reshape(4, n // h, h).any(-1)
        np.testing.assert_array_equal(frames, b[f"valid_{h}"])
    np.testing.assert_array_equal(b["audio"][0, n - 480:, 0], wavs[0])
    with pytest.raises(ValueError, match="multiple of hop 480"):
        collate_audio(wavs, 1600, hops)


def test_left_pad_tokens_exact():
    ids, valid = left_pad_tokens([np.array([5, 6], np.int32), None,
                                  np.array([], np.int32), np.array([7, 8, 9], np.int32)], 4)
    assert ids.dtype == np.int32 and valid.dtype == bool
    np.testing.assert_array_equal(ids, [[0, 0, 5, 6], [0] * 4, [0] * 4, [0, 7, 8, 9]])
    np.testing.assert_array_equal(valid, ids > 0)
    with pytest.raises(ValueError, match="do not fit"):
        left_pad_tokens([np.arange(5)], 4)


def test_round_up_and_hop_multiple():
    assert round_up(1, 8) == 8 and round_up(16, 8) == 16 and round_up(17, 8) == 24
    assert hop_multiple(()) == 1 and hop_multiple((320, 240)) == 960


# --------------------------------------------------------------------------- plans

SR = 1000
BOUNDS = (1000, 2000, 4000)


def bucket_plan(durations, batch=4, **kw) -> BatchPlan:
    args = dict(durations=np.asarray(durations), boundaries=BOUNDS, sample_rate=SR,
                window_batches=4, seed=0, num_epochs=3)
    args.update(kw)
    return BatchPlan(np.arange(len(durations)), batch, **args)


@pytest.fixture
def durations():
    return np.random.default_rng(1).uniform(0.2, 4.0, size=101)


def test_bucket_plan_covers_every_index_once_with_few_shapes(durations):
    plan = bucket_plan(durations, drop_remainder=False)
    assert plan.batches_per_epoch == 26 and len(plan) == 78
    for epoch in range(2):
        items = [plan[epoch * 26 + j] for j in range(26)]
        assert all(it["epoch"] == epoch for it in items)
        flat = np.concatenate([it["indices"] for it in items])
        assert sorted(flat[flat != PAD_INDEX]) == list(range(101))
        assert (flat == PAD_INDEX).sum() == 3
        for it in items:
            assert it["length"] in BOUNDS
            real = it["indices"][it["indices"] != PAD_INDEX]
            need = np.ceil(durations[real].max() * SR)
            assert it["length"] >= need  # the smallest boundary that fits
            assert it["length"] == min(b for b in BOUNDS if b >= need)


def test_bucket_plan_sorting_reduces_padding(durations):
    def padding(plan):
        total = 0.0
        for j in range(plan.batches_per_epoch):
            it = plan[j]
            total += it["length"] / SR * 4 - durations[it["indices"]].sum()
        return total
    sorted_pad = padding(bucket_plan(durations))
    random_pad = padding(bucket_plan(durations, window_batches=1))
    assert sorted_pad < 0.8 * random_pad


def test_plan_reshuffles_per_epoch_and_is_deterministic(durations):
    a, b = bucket_plan(durations), bucket_plan(durations)
    e0, e1 = a.epoch_plan(0)[0], a.epoch_plan(1)[0]
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(e1, b.epoch_plan(1)[0])
    np.testing.assert_array_equal(e0, pickle.loads(pickle.dumps(a)).epoch_plan(0)[0])
    assert not np.array_equal(e0, bucket_plan(durations, seed=1).epoch_plan(0)[0])
    assert a.fingerprint == b.fingerprint != bucket_plan(durations, seed=1).fingerprint


def test_plan_drop_remainder_and_infinite(durations):
    plan = bucket_plan(durations, num_epochs=None)
    assert plan.batches_per_epoch == 25 and len(plan) == sys.maxsize
    item = plan[10**9]
    assert item["epoch"] == 10**9 // 25 and (item["indices"] >= 0).all()
    flat = plan.epoch_plan(0)[0].ravel()
    assert len(set(flat)) == 100
    with pytest.raises(IndexError):
        bucket_plan(durations, num_epochs=1)[25]
    with pytest.raises(ValueError, match="no full batch"):
        BatchPlan(np.arange(3), 4, length=100)


def test_process_slices_are_disjoint_covering_and_share_lengths(durations):
    plans = [bucket_plan(durations, batch=6, process_index=p, process_count=3,
                         drop_remainder=False) for p in range(3)]
    assert all(pl.fingerprint == plans[0].fingerprint for pl in plans)
    seen = []
    for j in range(plans[0].batches_per_epoch):
        items = [pl[j] for pl in plans]
        assert len({it["length"] for it in items}) == 1
        assert all(it["indices"].shape == (2,) for it in items)
        seen += [i for it in items for i in it["indices"] if i != PAD_INDEX]
    assert sorted(seen) == list(range(101))
    with pytest.raises(ValueError, match="multiple of the process count"):
        BatchPlan(np.arange(10), 4, process_count=3, length=10)


def test_unshuffled_fixed_length_plan_keeps_order():
    plan = BatchPlan(np.arange(10, 20), 4, shuffle=False, num_epochs=1, drop_remainder=False,
                     length=640)
    batches = [plan[j]["indices"].tolist() for j in range(len(plan))]
    assert batches == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19, -1, -1]]
    assert {plan[j]["length"] for j in range(3)} == {640} and plan.shapes == [640]
