"""Procedural scenes, image sources, crop/scale and the grain image pipeline."""

import dataclasses
import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.data.images import (
    ArraySource,
    Augment,
    FolderSource,
    ImagePipelineConfig,
    SceneSource,
    crop_resize,
    digits_source,
    make_image_pipeline,
    make_source,
    read_image,
    resample_matrix,
    to_rgb_uint8,
)
from common.data.records import DataError
from common.data.scenes import render_scene

try:
    import PIL  # noqa: F401
    HAVE_PIL = True
except ImportError:
    HAVE_PIL = False


def cfg_(**kw) -> ImagePipelineConfig:
    base = dict(size=16, count=24, batch_size=4, process_index=0, process_count=1,
                read_threads=0)
    return ImagePipelineConfig(**{**base, **kw})


def take(it, n: int) -> list[np.ndarray]:
    return [np.asarray(next(it)["image"]).copy() for _ in range(n)]


def digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


# --- scenes -----------------------------------------------------------------------------

def test_scene_shape_dtype_and_determinism():
    a = render_scene(3, 7, 48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_scene(3, 7, 48))
    assert not np.array_equal(a, render_scene(3, 8, 48))
    assert not np.array_equal(a, render_scene(4, 7, 48))


def test_scenes_vary():
    ims = np.stack([render_scene(0, i, 32).astype(np.float32) for i in range(48)])
    assert ims.std(axis=(1, 2, 3)).min() > 8.0  # no flat images
    pair = [np.abs(ims[i] - ims[j]).mean() for i in range(48) for j in range(i)]
    assert min(pair) > 5.0  # no near-duplicates
    means = ims.mean(axis=(1, 2))  # [48, 3]
    assert means.std(axis=0).min() > 10.0  # colours vary across the set
    assert ims.min() == 0 or ims.max() == 255 or ims.max() - ims.min() > 150


def test_scene_geometry_is_resolution_independent():
    for i in range(6):
        big = render_scene(1, i, 64).astype(np.float32).reshape(32, 2, 32, 2, 3).mean((1, 3))
        small = render_scene(1, i, 32).astype(np.float32)
        # Only pixel noise and edge anti-aliasing differ; another scene differs by ~50.
        assert np.abs(big - small).mean() < 12.0, i


def test_scene_bad_arguments():
    with pytest.raises(ValueError, match="seed and index"):
        render_scene(-1, 0, 32)
    with pytest.raises(ValueError, match="size"):
        render_scene(0, 0, 2)


def test_scene_source():
    src = SceneSource(5, 24, seed=2)
    assert len(src) == 5
    rec = src[np.int64(3)]
    assert rec["id"] == "scenes/2/3"
    np.testing.assert_array_equal(rec["image"], render_scene(2, 3, 24))
    with pytest.raises(IndexError):
        src[5]


# --- other sources ----------------------------------------------------------------------

def test_digits_source():
    src = digits_source()
    assert len(src) == 1797
    rec = src[0]
    assert rec["id"] == "digits/0"
    assert rec["image"].shape == (8, 8, 3) and rec["image"].dtype == np.uint8
    # The first row of digits.csv.gz starts 0, 0, 5, 13 (of 16).
    np.testing.assert_array_equal(rec["image"][0, :4, 1], [0, 0, 80, 207])
    assert max(src[i]["image"].max() for i in range(20)) == 255
    assert len(make_source(cfg_(source="digits", count=10))) == 10
    # load_digits' targets: the first ten rows are 0..9 in order; 0-9 each about 180 times.
    assert [src[i]["label"] for i in range(10)] == list(range(10))
    counts = np.bincount([src[i]["label"] for i in range(len(src))])
    assert len(counts) == 10 and counts.min() >= 170


def test_labels_pass_through_the_pipeline():
    src = digits_source(40)
    cfg = cfg_(source="digits", size=16, count=40, batch_size=8, shuffle=False,
               random_crop=False, hflip=False)
    batch = next(iter(make_image_pipeline(cfg, src)))
    assert batch["image"].shape == (8, 16, 16, 3)
    assert batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["label"], [src[i]["label"] for i in range(8)])
    with pytest.raises(DataError, match="3 labels for 2 images"):
        ArraySource([np.zeros((4, 4, 3), np.uint8)] * 2, ["a", "b"], [0, 1, 2])


def test_to_rgb_uint8_layouts():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb_uint8(grey, "g")
    assert out.shape == (3, 4, 3) and (out == grey[..., None]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_rgb_uint8(rgba, "a").shape == (2, 2, 3) and to_rgb_uint8(rgba, "a").max() == 0
    assert to_rgb_uint8(np.ones((2, 2), np.float32), "f").min() == 255
    assert to_rgb_uint8(np.full((2, 2), 65535, np.uint16), "u").min() == 255
    with pytest.raises(DataError, match=r"bad\.npy: image has NaN"):
        to_rgb_uint8(np.full((2, 2), np.nan), "bad.npy")
    with pytest.raises(DataError, match="x: not an image"):
        to_rgb_uint8(np.zeros((2, 2, 5)), "x")


def test_folder_source_npy(tmp_path):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "b.npy", np.full((10, 12), 7, np.uint8))
    np.save(tmp_path / "sub" / "a.npy", np.zeros((9, 9, 3), np.float32))
    (tmp_path / "notes.txt").write_text("not an image")
    src = FolderSource(tmp_path)
    assert len(src) == 2 and [src[i]["id"] for i in range(2)] == ["b.npy", "sub/a.npy"]
    assert src[0]["image"].shape == (10, 12, 3) and src[0]["image"].max() == 7
    it = make_image_pipeline(cfg_(source="folder", folder=str(tmp_path), batch_size=2))
    assert next(it)["image"].shape == (2, 16, 16, 3)
    np.save(tmp_path / "c.npy", np.zeros((4, 4, 7)))
    with pytest.raises(DataError, match=r"c\.npy: not an image"):
        read_image(tmp_path / "c.npy")


def test_folder_source_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FolderSource(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no \.png"):
        FolderSource(tmp_path)
    (tmp_path / "broken.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"broken\.npy: unreadable"):
        FolderSource(tmp_path)[0]


@pytest.mark.skipif(HAVE_PIL, reason="checks the message shown without Pillow")
def test_png_without_pillow_is_a_clear_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="needs Pillow"):
        FolderSource(tmp_path)
    with pytest.raises(DataError, match="needs Pillow"):
        make_source(cfg_(source="sklearn"))


@pytest.mark.skipif(not HAVE_PIL, reason="needs Pillow")
def test_sklearn_photos():
    src = make_source(cfg_(source="sklearn"))
    assert len(src) == 2 and src[0]["image"].shape == (427, 640, 3)


# --- crop and scale ---------------------------------------------------------------------

@pytest.mark.parametrize("start,length,out", [(3.3, 30.5, 16), (10.2, 8.7, 16)])
def test_resample_matches_jax_scale_and_translate(rng, start, length, out):
    x = rng.random((50, 7)).astype(np.float32)
    scale = out / length
    ref = jax.image.scale_and_translate(jnp.asarray(x), (out, 7), (0,), jnp.array([scale]),
                                        jnp.array([-start * scale]), method="linear",
                                        antialias=True)
    np.testing.assert_allclose(resample_matrix(50, start, length, out) @ x, ref, atol=1e-5)


@pytest.mark.parametrize("shape,window,size,flip", [
    ((40, 40), (3.5, 1.2, 35.0), 16, True),   # shrink: wide taps
    ((30, 50), (0.0, 10.0, 30.0), 30, False),  # same scale, sub-pixel free
    ((8, 8), (1.2, 0.5, 6.3), 20, True),       # enlarge (digits)
])
def test_crop_resize_equals_the_dense_resampling(rng, shape, window, size, flip):
    img = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    top, left, side = window
    wy = resample_matrix(shape[0], top, side, size).astype(np.float64)
    wx = resample_matrix(shape[1], left, side, size).astype(np.float64)
    ref = np.einsum("oh,pw,hwc->opc", wy, wx[::-1] if flip else wx, img.astype(np.float64))
    np.testing.assert_allclose(crop_resize(img, top, left, side, size, flip), ref, atol=1e-3)


def test_crop_resize_identity_flip_and_range(rng):
    img = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    np.testing.assert_array_equal(crop_resize(img, 0, 0, 12, 12), img)
    np.testing.assert_array_equal(crop_resize(img, 0, 0, 12, 12, flip=True), img[:, ::-1])
    # An integer 2x2 window at its own resolution is that window.
    np.testing.assert_array_equal(crop_resize(img, 3, 5, 4, 4), img[3:7, 5:9])
    small = crop_resize(img, 1.3, 2.7, 8.9, 5)
    assert small.shape == (5, 5, 3) and small.dtype == np.float32
    assert small.min() >= img.min() and small.max() <= img.max()
    # Shrinking 12 -> 6 averages 2x2 blocks (plus a quarter of the neighbours).
    assert abs(crop_resize(img, 0, 0, 12, 6).mean() - img.mean()) < 3.0


def test_augment_crop_and_flip():
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, :10] = 255  # bright left third
    rec = {"id": "x", "image": img}
    cfg = cfg_(size=10, random_crop=False, hflip=False, crop_scale=(1.0, 1.0))
    out = Augment(cfg)(rec, np.random.default_rng(0))["image"]
    assert out.shape == (10, 10, 3) and out.dtype == np.float32
    # A centred 20x20 crop of columns 5..25: its left quarter is bright.
    np.testing.assert_allclose(out[:, :2], 1.0)
    np.testing.assert_allclose(out[:, 3:], -1.0)
    flipped = {bool(Augment(dataclasses.replace(cfg, hflip=True))(
        rec, np.random.default_rng(s))["image"][0, -1, 0] > 0) for s in range(16)}
    assert flipped == {True, False}
    u8 = Augment(dataclasses.replace(cfg, normalise=False))(rec, np.random.default_rng(0))
    assert u8["image"].dtype == np.uint8 and u8["image"].max() == 255
    # Random crops: other sizes and positions, inside the image.
    rec = {"id": "y", "image": np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)}
    crops = [Augment(dataclasses.replace(cfg, random_crop=True, crop_scale=(0.3, 0.6)))(
        rec, np.random.default_rng(s))["image"] for s in range(8)]
    assert len({digest(c) for c in crops}) == 8
    assert all(c.min() >= -1 and c.max() <= 1 for c in crops)


# --- the pipeline -----------------------------------------------------------------------

def test_pipeline_batches():
    it = make_image_pipeline(cfg_(size=24))
    b = next(it)
    assert set(b) == {"image"}
    assert b["image"].shape == (4, 24, 24, 3) and b["image"].dtype == np.float32
    assert b["image"].min() >= -1.0 and b["image"].max() <= 1.0
    assert b["image"].min() < -0.5 and b["image"].max() > 0.5
    assert cfg_(size=24).render_size == math.ceil(24 / 0.75)
    u8 = next(make_image_pipeline(cfg_(normalise=False)))["image"]
    assert u8.dtype == np.uint8 and u8.shape == (4, 16, 16, 3)


def test_pipeline_is_deterministic_and_seeded():
    a = take(make_image_pipeline(cfg_()), 3)
    b = take(make_image_pipeline(cfg_()), 3)
    c = take(make_image_pipeline(cfg_(seed=1)), 3)
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_pipeline_epochs():
    # 24 images, 4 per batch: 6 batches an epoch, each image once.
    cfg = cfg_(num_epochs=2, random_crop=False, hflip=False, crop_scale=(1.0, 1.0))
    batches = [b["image"] for b in make_image_pipeline(cfg)]
    assert len(batches) == 12
    first = [digest(im) for b in batches[:6] for im in b]
    second = [digest(im) for b in batches[6:] for im in b]
    assert len(set(first)) == 24 and set(first) == set(second)
    assert first != second  # reshuffled
    # The second epoch augments again: crops differ from the first epoch's.
    aug = [b["image"] for b in make_image_pipeline(cfg_(num_epochs=2))]
    assert {digest(im) for b in aug[:6] for im in b}.isdisjoint(
        {digest(im) for b in aug[6:] for im in b})


def test_last_smaller_batch_is_kept_when_asked():
    # 10 images, 4 per batch: the last 2 are dropped, or kept as a batch of 2.
    sizes = lambda **kw: [len(b["image"]) for b in make_image_pipeline(
        cfg_(count=10, num_epochs=1, shuffle=False, **kw))]
    assert sizes() == [4, 4] and sizes(drop_remainder=False) == [4, 4, 2]


def test_resume_continues_exactly():
    cfg = cfg_(count=10)  # batches cross epoch boundaries
    it = make_image_pipeline(cfg)
    take(it, 4)
    state = json.loads(json.dumps(it.get_state()))
    assert state["position"] == 4
    expected = take(it, 5)
    fresh = make_image_pipeline(cfg)
    fresh.set_state(state)
    for x, y in zip(take(fresh, 5), expected, strict=True):
        np.testing.assert_array_equal(x, y)
    assert fresh.get_state()["position"] == 9
    longer = make_image_pipeline(cfg_(count=10, num_epochs=50))  # training extended
    longer.set_state(state)
    np.testing.assert_array_equal(next(longer)["image"], expected[0])
    with pytest.raises(ValueError, match="another pipeline"):
        make_image_pipeline(cfg_(count=10, seed=5)).set_state(state)
    with pytest.raises(ValueError, match="not an image iterator state"):
        fresh.set_state({"next_index": 3})


def test_process_shards_are_disjoint_and_cover_the_set():
    kw = dict(num_epochs=1, random_crop=False, hflip=False, crop_scale=(1.0, 1.0),
              batch_size=8)
    whole = {digest(im) for b in make_image_pipeline(cfg_(**{**kw, "batch_size": 4}))
             for im in b["image"]}
    shards = [[digest(im) for b in make_image_pipeline(cfg_(process_index=p, process_count=2,
                                                            **kw)) for im in b["image"]]
              for p in range(2)]
    assert len(whole) == 24
    assert [len(s) for s in shards] == [12, 12]  # 8 global = 4 per process, 3 batches each
    assert set(shards[0]).isdisjoint(shards[1])
    assert set(shards[0]) | set(shards[1]) == whole


def test_uneven_source_gives_equal_shards():
    kw = dict(count=25, num_epochs=1, batch_size=3, process_count=3)
    lens = [sum(1 for _ in make_image_pipeline(cfg_(process_index=p, **kw))) for p in range(3)]
    assert lens == [8, 8, 8]  # 24 of 25 images, 8 each, 1 per batch


def test_config_errors():
    for kw, field in [(dict(source="png"), "source"), (dict(size=2), "size"),
                      (dict(crop_scale=(0.8, 0.5)), "crop_scale"),
                      (dict(crop_scale=(0.5,)), "crop_scale"),
                      (dict(source="folder"), "folder"), (dict(batch_size=0), "batch_size"),
                      (dict(num_epochs=0), "num_epochs"), (dict(worker_count=-1), "worker")]:
        with pytest.raises(ValueError, match=f"ImagePipelineConfig.{field}"):
            cfg_(**kw)
    with pytest.raises(ValueError, match="multiple of the process count"):
        make_image_pipeline(cfg_(batch_size=3, process_count=2))
    with pytest.raises(DataError, match="fewer than"):
        make_image_pipeline(cfg_(count=1, batch_size=2, process_count=2), source=ArraySource(
            [np.zeros((4, 4, 3), np.uint8)], ["one"]))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    cfg = cfg_(count=16, num_epochs=1)
    plain = [b["image"].copy() for b in make_image_pipeline(cfg)]
    with make_image_pipeline(dataclasses.replace(cfg, worker_count=1)) as it:
        mp = take(it, 2)
        state = it.get_state()
        rest = [np.asarray(b["image"]).copy() for b in it]
    assert len(plain) == 4 and len(mp) + len(rest) == 4
    for x, y in zip(plain, mp + rest, strict=True):
        np.testing.assert_array_equal(x, y)
    resumed = make_image_pipeline(cfg)  # the state does not depend on the worker count
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], plain[2])


def test_checkpoint_round_trip_restores_the_iterator(tmp_path):
    from common.train.checkpoint import CheckpointConfig, Checkpointer

    cfg = cfg_(count=10)
    it = make_image_pipeline(cfg)
    take(it, 3)
    ck = Checkpointer(tmp_path, CheckpointConfig(async_save=False))
    ck.save(3, {"p": {"w": jnp.ones(2)}}, data_iterator=it)
    ck.manager.wait_until_finished()
    expected = take(it, 2)
    resumed = make_image_pipeline(cfg)
    ck.restore({"p": {"w": jnp.zeros(2)}}, data_iterator=resumed)
    for x, y in zip(take(resumed, 2), expected, strict=True):
        np.testing.assert_array_equal(x, y)
