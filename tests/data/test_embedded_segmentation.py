"""Embedded segmentation defaults: procedural shapes and DSB-2018 nuclei tiles (offline)."""

import numpy as np
import pytest
import torch

from kanzoo.data import ShapesDataset, build_data, render_shapes


def test_shapes_are_deterministic_and_splits_differ():
    a = build_data("shapes", image_size=32, num_train=8, num_val=4, num_test=0, seed=5)
    b = build_data("shapes", image_size=32, num_train=8, num_val=4, num_test=0, seed=5)
    assert a.test is None and len(a.train) == 8 and len(a.val) == 4
    for i in range(4):
        assert torch.equal(a.train[i]["pixel_values"], b.train[i]["pixel_values"])
        assert torch.equal(a.train[i]["mask"], b.train[i]["mask"])
    assert not torch.equal(a.train[0]["pixel_values"], a.val[0]["pixel_values"])
    c = build_data("shapes", image_size=32, num_train=8, num_val=4, seed=6)
    assert not torch.equal(a.train[0]["mask"], c.train[0]["mask"])


def test_shapes_masks_match_the_drawn_shapes():
    ds = ShapesDataset(num_samples=40, image_size=48, multiclass=True, noise=0.0)
    counts = torch.zeros(4, dtype=torch.long)
    for i in range(len(ds)):
        img, mask = ds.raw(i)
        counts += torch.bincount(torch.from_numpy(mask).flatten(), minlength=4)
        # without noise, shape pixels differ from the background model far more than the texture does
        fg = mask > 0
        if fg.any() and (~fg).any():
            diff = np.abs(img[:, fg].mean(axis=1) - img[:, ~fg].mean(axis=1)).max()
            assert diff > 0.05
    assert (counts > 0).all()  # every class appears
    assert 0.05 < counts[1:].sum() / counts.sum() < 0.5


def test_render_shapes_circle_area_matches_geometry():
    # a single circle: its mask area is close to pi r^2 for the radius drawn from the same stream
    areas = []
    for s in range(200):
        img, mask = render_shapes(np.random.default_rng(s), size=64, min_shapes=1, max_shapes=1)
        assert img.shape == (3, 64, 64) and img.min() >= 0 and img.max() <= 1
        areas.append((mask == 1).sum())
    circles = [a for a in areas if a > 0]
    assert len(circles) > 30
    # radii are uniform in [0.08, 0.22] of the side (~63 px between pixel centres): mean pi E[r^2]
    expected = np.pi * np.mean(np.random.default_rng(0).uniform(0.08, 0.22, 100000) ** 2) * 63**2
    assert abs(np.mean(circles) / expected - 1) < 0.2


def test_shapes_binary_vs_multiclass_and_batches():
    dm = build_data("shapes", image_size=32, num_train=16, num_val=4, multiclass=True)
    assert dm.info["num_classes"] == 4 and dm.info["class_names"][1] == "circle"
    binary = build_data("shapes", image_size=32, num_train=16, num_val=4)
    assert binary.info["num_classes"] == 2
    assert torch.equal(binary.train[3]["mask"], (dm.train[3]["mask"] > 0).long())
    batch = next(iter(dm.loader("train", batch_size=8)))
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and batch["mask"].dtype == torch.long
    assert len(batch["id"]) == 8
    x = torch.stack([binary.train[i]["pixel_values"] for i in range(16)])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.2  # normalized with train statistics


def test_nuclei_tiles_partition_the_shipped_image():
    from kanzoo.data.nuclei import SAMPLE

    dm = build_data("nuclei", augment=False)
    assert dm.info["num_classes"] == 2 and dm.info["in_chans"] == 1
    assert len(dm.train) == 51 and len(dm.val) == 13
    assert not set(dm.train.ids) & set(dm.val.ids)
    inst = np.load(SAMPLE, allow_pickle=False)["mask"]
    full = np.full(inst.shape, -1, dtype=np.int64)
    for ds in (dm.train, dm.val):
        for i in range(len(ds)):
            item = ds[i]
            r, c = (int(v[1:]) for v in item["id"].split("_")[1:])
            assert item["pixel_values"].shape == (1, 64, 64)
            full[r : r + 64, c : c + 64] = item["mask"].numpy()
    np.testing.assert_array_equal(full, (inst > 0).astype(np.int64))
    fg = full.mean()
    assert 0.1 < fg < 0.4
    # image intensity is higher on nuclei than on background
    img = np.concatenate([dm.train.original_image(i)[0].numpy().ravel() for i in range(len(dm.train))])
    msk = np.concatenate([dm.train.original_mask(i).numpy().ravel() for i in range(len(dm.train))])
    assert img[msk == 1].mean() > img[msk == 0].mean() + 0.1


def test_nuclei_split_is_seeded_and_options():
    a, b = build_data("nuclei", seed=1), build_data("nuclei", seed=1)
    assert a.val.ids == b.val.ids and a.val.ids != build_data("nuclei", seed=2).val.ids
    dm = build_data("nuclei", tile_size=128, image_size=64, in_chans=3)
    assert len(dm.train) + len(dm.val) == 16
    item = dm.train[0]
    assert item["pixel_values"].shape == (3, 64, 64) and item["orig_size"].tolist() == [128, 128]
    with pytest.raises(ValueError, match="tile_size"):
        build_data("nuclei", tile_size=4)
    with pytest.raises(FileNotFoundError, match="img2d.tif"):
        build_data("nuclei", data_dir="/nonexistent")
