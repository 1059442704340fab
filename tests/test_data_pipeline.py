"""grain pipelines (mraa_jax.data.pipeline) and augmentations (mraa_jax.data.augment).

Most tests use an ArraySource of "coded" videos: frame t of video v has red = 10 v + 1 and
green = 10 t + 1 on its left half and black on its right half, so a batch tells which video and
frames were sampled, and whether a horizontal flip happened.
"""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from mraa_jax.data import pipeline
from mraa_jax.data.augment import Augmentation, augment_pair, color_jitter, shift_hue
from mraa_jax.data.sources import ArraySource, open_split
from mraa_jax.data.synthetic import build_synthetic_dataset

OFF = Augmentation.off()


def coded_source(counts=(5, 3, 4, 6, 2, 7), identities=("a", "a", "b", "c", "c", "c")):
    videos = {}
    for v, (n, ident) in enumerate(zip(counts, identities)):
        frames = np.zeros((n, 8, 8, 3), np.uint8)
        for t in range(n):
            frames[t, :, :4, 0] = 10 * v + 1
            frames[t, :, :4, 1] = 10 * t + 1
        videos[f"{ident}#{v}"] = frames
    return ArraySource(videos)


def decode(image):
    """(video, frame, flipped) of a coded frame (float in [0, 1])."""
    px = np.round(image * 255).astype(int)
    flipped = px[0, 0, 0] == 0
    left = px[0, -1] if flipped else px[0, 0]
    return (left[0] - 1) // 10, (left[1] - 1) // 10, bool(flipped)


def take(it, n):
    return [next(it) for _ in range(n)]


def test_batches_shape_dtype_range():
    it = pipeline.training_pairs(coded_source(), 4, seed=0, num_repeats=2, shard=(0, 1))
    batch = next(it)
    assert set(batch) == {"source", "driving"}
    for x in batch.values():
        assert x.shape == (4, 8, 8, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert it.steps_per_epoch == 3 and it.local_batch_size == 4 and it.epoch_size == 12


def test_pairs_are_two_sorted_frames_of_one_video():
    src = coded_source()
    it = pipeline.training_pairs(src, 6, seed=1, num_repeats=4, augmentation=False, shard=(0, 1))
    seen = []
    for batch in take(it, 8):
        for s, d in zip(batch["source"], batch["driving"]):
            (vs, ts, _), (vd, td, _) = decode(s), decode(d)
            assert vs == vd and ts <= td < src.videos[vs].num_frames
            seen.append((vs, ts, td))
    assert len({v for v, _, _ in seen}) == len(src)


def test_epochs_visit_every_video_num_repeats_times():
    src = coded_source()
    it = pipeline.training_pairs(src, 6, seed=2, num_repeats=3, augmentation=False, shard=(0, 1))
    assert it.steps_per_epoch == 3
    for _ in range(2):  # two epochs, each a fresh shuffle
        videos = [decode(s)[0] for b in take(it, 3) for s in b["source"]]
        assert sorted(videos) == sorted(list(range(6)) * 3)


def test_id_sampling_visits_identities():
    src = coded_source()
    it = pipeline.training_pairs(src, 3, seed=3, num_repeats=10, id_sampling=True, augmentation=False, shard=(0, 1))
    assert it.steps_per_epoch == 10  # 3 identities x 10 repeats / batch 3
    ident_of = {v: info.identity for v, info in enumerate(src.videos)}
    batches = take(it, 10)
    videos = [decode(s)[0] for b in batches for s in b["source"]]
    assert sorted(ident_of[v] for v in videos) == sorted(["a", "b", "c"] * 10)
    assert {v for v in videos if ident_of[v] == "c"} == {3, 4, 5}  # a random video of the identity


def test_same_seed_same_batches_other_seed_differs():
    kw = dict(num_repeats=3, shard=(0, 1))
    a = take(pipeline.training_pairs(coded_source(), 4, seed=7, **kw), 6)
    b = take(pipeline.training_pairs(coded_source(), 4, seed=7, **kw), 6)
    c = take(pipeline.training_pairs(coded_source(), 4, seed=8, **kw), 6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["source"], y["source"])
        np.testing.assert_array_equal(x["driving"], y["driving"])
    assert any(not np.array_equal(x["source"], z["source"]) for x, z in zip(a, c))


def test_restored_state_continues_the_sequence():
    make = lambda: pipeline.training_pairs(coded_source(), 4, seed=9, num_repeats=3, shard=(0, 1))  # noqa: E731
    full = take(make(), 10)
    it = make()
    take(it, 4)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    resumed = make()
    resumed.set_state(state)
    for x, y in zip(take(resumed, 6), full[4:]):
        np.testing.assert_array_equal(x["source"], y["source"])
        np.testing.assert_array_equal(x["driving"], y["driving"])
    other = pipeline.training_pairs(coded_source(), 4, seed=10, num_repeats=3, shard=(0, 1))
    with pytest.raises(ValueError, match="different pipeline"):
        other.set_state(state)


def test_processes_split_each_global_batch():
    kw = dict(seed=4, num_repeats=4, augmentation=False)
    whole = take(pipeline.training_pairs(coded_source(), 4, shard=(0, 1), **kw), 3)
    parts = [take(pipeline.training_pairs(coded_source(), 4, shard=(p, 2), **kw), 3) for p in range(2)]
    for k in range(3):
        assert parts[0][k]["source"].shape[0] == 2
        np.testing.assert_array_equal(parts[0][k]["source"], whole[k]["source"][0::2])
        np.testing.assert_array_equal(parts[1][k]["driving"], whole[k]["driving"][1::2])


def test_device_axis_and_batch_checks():
    it = pipeline.training_pairs(
        coded_source(), 8, seed=0, num_repeats=4, shard=(1, 2), num_devices=2, device_axis=True
    )
    assert next(it)["source"].shape == (2, 2, 8, 8, 3)
    with pytest.raises(ValueError, match="does not divide over 3 devices"):
        pipeline.training_pairs(coded_source(), 8, num_repeats=4, shard=(0, 2), num_devices=3)
    with pytest.raises(ValueError, match="multiple of the process count"):
        pipeline.training_pairs(coded_source(), 5, shard=(0, 2))
    with pytest.raises(ValueError, match="fewer than one batch"):
        pipeline.training_pairs(coded_source(), 16, num_repeats=1, shard=(0, 1))
    mixed = ArraySource({"a": np.zeros((2, 8, 8, 3), np.uint8), "b": np.zeros((2, 4, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match="different frame sizes"):
        pipeline.training_pairs(mixed, 2, shard=(0, 1))


def test_augmentation_is_consistent_across_the_pair():
    still = np.random.default_rng(0).integers(0, 255, (1, 8, 8, 3), dtype=np.uint8).repeat(4, 0)
    src = ArraySource({"still": still, "still2": still})
    it = pipeline.training_pairs(src, 2, seed=5, num_repeats=8, shard=(0, 1))  # every augmentation on
    changed = False
    for batch in take(it, 8):
        np.testing.assert_array_equal(batch["source"], batch["driving"])  # same frame, same augmentation
        changed |= not np.allclose(batch["source"][0], still[0] / 255, atol=1e-6)
    assert changed


def test_flips():
    src = coded_source()
    pair = src.frames(3, [1, 4])
    rng = np.random.default_rng(0)
    results = {
        (decode(out[0])[1], decode(out[0])[2])
        for out in (augment_pair(pair, Augmentation(True, True, 0, 0, 0, 0), rng) for _ in range(64))
    }
    assert results == {(1, False), (1, True), (4, False), (4, True)}  # time flip swaps; flips apply to both
    for _ in range(16):
        out = augment_pair(pair, Augmentation(True, True, 0, 0, 0, 0), rng)
        assert decode(out[0])[2] == decode(out[1])[2]


def test_color_jitter_definitions():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 5, 3)).astype(np.float32)
    x[0, 0, :3] = [[0.5, 0.5, 0.5], [1, 0, 0], [0, 0, 0]]  # grey, pure red, black
    for shift in (0.07, -0.1, 0.5):
        expected = []
        for p in x.reshape(-1, 3):
            h, s, v = colorsys.rgb_to_hsv(*p)
            expected.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
        np.testing.assert_allclose(shift_hue(x, shift), np.reshape(expected, x.shape), atol=1e-5)
    # brightness alone is a clipped scale by one factor for both frames
    out = color_jitter(x, Augmentation(False, False, 0.1, 0, 0, 0), np.random.default_rng(3))
    factor = np.random.default_rng(3).uniform(0.9, 1.1)
    np.testing.assert_allclose(out, np.clip(x * factor, 0, 1), atol=1e-6)
    # saturation 0 (factor 1 - 1) would be grey; contrast keeps the mean grey level
    out = color_jitter(x, Augmentation(False, False, 0, 0.1, 0, 0), np.random.default_rng(4))
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(
        (out @ np.array([0.299, 0.587, 0.114])).mean((1, 2)), grey.mean((1, 2)), atol=5e-3
    )  # up to clipping


def test_augmentation_from_the_original_params():
    params = {
        "flip_param": {"horizontal_flip": True, "time_flip": False},
        "jitter_param": {"brightness": 0.1, "contrast": 0.2, "saturation": 0.1, "hue": 0.05},
    }
    aug = Augmentation.from_params(params)
    assert aug == Augmentation(True, False, 0.1, 0.2, 0.1, 0.05)
    assert Augmentation.from_params(None) == OFF and not OFF.active
    with pytest.raises(NotImplementedError, match="rotation_param"):
        Augmentation.from_params({"rotation_param": {"degrees": 10}})


def test_test_videos_in_order_and_sharded():
    src = coded_source()
    videos = list(pipeline.test_videos(src, shard=(0, 1)))
    assert [v["name"] for v in videos] == [v.name for v in src.videos]
    assert videos[3]["video"].shape == (6, 8, 8, 3) and videos[3]["video"].dtype == np.float32
    np.testing.assert_allclose(videos[2]["video"], src.video(2) / 255, atol=1e-7)
    odd = list(pipeline.test_videos(src, shard=(1, 2)))
    assert [v["index"] for v in odd] == [1, 3, 5]


def test_animation_pairs_random_and_csv(tmp_path, caplog):
    src = coded_source()
    a = pipeline.animation_pairs(src, num_pairs=10, seed=0, shard=(0, 1))
    b = pipeline.animation_pairs(src, num_pairs=10, seed=0, shard=(0, 1))
    assert a.pairs == b.pairs and len(set(a.pairs)) == 10
    first = next(a)
    s, d = a.pairs[0]
    assert first["source_name"] == src.videos[s].name and first["driving_name"] == src.videos[d].name
    assert first["source_video"].shape == (src.videos[s].num_frames, 8, 8, 3)
    assert len(pipeline.animation_pairs(src, num_pairs=1000, shard=(0, 1)).pairs) == 36  # all pairs at most

    csv = tmp_path / "pairs.csv"
    csv.write_text("distance,source,driving\n0,a#0,c#5\n1,b#2.mp4,a#1\n2,nobody,a#0\n")
    with caplog.at_level("WARNING"):
        it = pipeline.animation_pairs(src, csv=csv, shard=(0, 1))
    assert it.pairs == [(0, 5), (2, 1)] and "1 of 3 pairs" in caplog.text
    assert [(p["source_name"], p["driving_name"]) for p in it] == [("a#0", "c#5"), ("b#2", "a#1")]

    bad = tmp_path / "bad.csv"
    bad.write_text("src,drv\na#0,a#1\n")
    with pytest.raises(ValueError, match="bad.csv.*'source' and 'driving'"):
        pipeline.animation_pairs(src, csv=bad, shard=(0, 1))
    none = tmp_path / "none.csv"
    none.write_text("source,driving\nx,y\n")
    with pytest.raises(ValueError, match="none.csv: none of its 1 pairs"):
        pipeline.animation_pairs(src, csv=none, shard=(0, 1))


def test_pipeline_over_built_records_is_deterministic(tmp_path):
    summary = build_synthetic_dataset(tmp_path, num_train=6, num_test=2, frames=5, size=16, seed=0)
    kw = dict(seed=1, num_repeats=2, shard=(0, 1))
    a = take(pipeline.training_pairs(open_split(summary.dataset_dir, "train"), 4, **kw), 3)
    b = take(pipeline.training_pairs(summary.dataset_dir, 4, **kw), 3)  # a dataset dir means its train split
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["source"], y["source"])
    assert a[0]["source"].shape == (4, 16, 16, 3)
    assert len(list(pipeline.test_videos(summary.dataset_dir, shard=(0, 1)))) == 2
