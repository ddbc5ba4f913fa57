"""Image classification data: digits, imagefolder dirs, saved HF datasets; registry basics."""

import numpy as np
import pytest
import torch
from PIL import Image

from kanzoo.data import DataModule, build_data, list_datasets


def test_registry_lists_every_builder_and_suggests_names():
    names = list_datasets()
    expected = {"shakespeare", "pydoc", "digits", "shapes", "nuclei", "text", "image_folder", "hf_image"}
    assert expected | {"segmentation_folder", "hf_segmentation"} <= set(names)
    assert all(isinstance(v, str) and v for v in list_datasets(with_descriptions=True).values())
    with pytest.raises(ValueError, match="Did you mean 'digits'"):
        build_data("digit")
    with pytest.raises(ValueError, match="Unknown dataset 'zzzz'"):
        build_data("zzzz")
    for bad in ("", "two words", 3, None):
        with pytest.raises(ValueError, match="task"):
            DataModule(task=bad, train=[], val=[])
    # other task names (forecasting, ...) are the trainer's and evaluator's registries' business
    assert DataModule(task="forecasting", train=[], val=[]).task == "forecasting"


def test_digits_matches_sklearn_split_and_pixels():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dm = build_data("digits", image_size=8, seed=3)
    d = load_digits()
    tr, va = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=3, stratify=d.target)
    assert len(dm.train) == len(tr) and len(dm.val) == len(va)
    (mean,), (std,) = dm.info["mean"], dm.info["std"]
    for j in (0, 7, len(va) - 1):
        item = dm.val[j]
        np.testing.assert_allclose(
            item["pixel_values"][0].numpy() * std + mean, d.images[va[j]] / 16.0, atol=1e-5
        )
        assert int(item["labels"]) == d.target[va[j]]
    train_x = torch.stack([dm.train[i]["pixel_values"] for i in range(len(dm.train))])
    assert abs(float(train_x.mean())) < 1e-4 and abs(float(train_x.std()) - 1) < 1e-3


def test_digits_upsampled_rgb_batches():
    dm = build_data("digits", image_size=32, in_chans=3)
    assert dm.info["num_classes"] == 10 and dm.info["in_chans"] == 3 and dm.info["class_names"][3] == "3"
    batch = next(iter(dm.loader("train", batch_size=16)))
    assert batch["pixel_values"].shape == (16, 3, 32, 32) and batch["labels"].shape == (16,)
    assert torch.equal(batch["pixel_values"][:, 0], batch["pixel_values"][:, 2])
    with pytest.raises(ValueError, match="in_chans"):
        build_data("digits", in_chans=2)


def _color_folder(root, n=6, size=(20, 14)):
    """Two classes: 'blue' images are blue, 'red' images are red (plus noise)."""
    rng = np.random.default_rng(0)
    for cls, ch in (("blue", 2), ("red", 0)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 40, size=(*size, 3), dtype=np.uint8)
            a[..., ch] = 220
            Image.fromarray(a).save(root / cls / f"{cls}{i}.png")


def test_image_folder_labels_follow_folders(tmp_path):
    _color_folder(tmp_path / "imgs")
    dm = build_data("image_folder", path=tmp_path / "imgs", image_size=16, val_fraction=0.25, seed=1)
    assert dm.info["class_names"] == ["blue", "red"] and dm.info["num_classes"] == 2
    assert len(dm.train) + len(dm.val) == 12 and len(dm.val) == 3
    mean = torch.tensor(dm.info["mean"]).view(3, 1, 1)
    std = torch.tensor(dm.info["std"]).view(3, 1, 1)
    for ds in (dm.train, dm.val):
        for i in range(len(ds)):
            item = ds[i]
            assert item["pixel_values"].shape == (3, 16, 16)
            rgb = (item["pixel_values"] * std + mean).mean(dim=(1, 2))
            assert int(item["labels"]) == (0 if rgb[2] > rgb[0] else 1)
    again = build_data("image_folder", path=tmp_path / "imgs", image_size=16, val_fraction=0.25, seed=1)
    assert [int(again.val[i]["labels"]) for i in range(3)] == [int(dm.val[i]["labels"]) for i in range(3)]


def test_image_folder_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        build_data("image_folder", path=tmp_path / "nope")


def test_hf_image_from_saved_dataset_dir_grayscale(tmp_path):
    import datasets

    imgs = [Image.fromarray(np.full((10, 10), v, dtype=np.uint8)) for v in (0, 50, 200, 250, 10, 240)]
    labels = [0, 0, 1, 1, 0, 1]
    feats = datasets.Features(
        {"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["dark", "light"])}
    )
    ds = datasets.Dataset.from_dict({"img": imgs, "fine_label": labels}, features=feats)
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 2])}).save_to_disk(str(tmp_path / "saved"))
    dm = build_data(
        "hf_image", path=tmp_path / "saved", image_size=8, in_chans=1, augment=False, val_fraction=0.34
    )
    assert dm.info["class_names"] == ["dark", "light"] and dm.test is not None and len(dm.test) == 2
    (mean,), (std,) = dm.info["mean"], dm.info["std"]
    for ds_ in (dm.train, dm.val, dm.test):
        for i in range(len(ds_)):
            item = ds_[i]
            assert item["pixel_values"].shape == (1, 8, 8)
            light = float(item["pixel_values"].mean()) * std + mean > 0.5
            assert int(item["labels"]) == int(light)
    with pytest.raises(ValueError, match="label column 'nope'"):
        build_data("hf_image", path=tmp_path / "saved", label_column="nope")


def test_image_datasets_pickle_for_spawned_workers(tmp_path):
    import pickle

    _color_folder(tmp_path / "imgs", n=3)
    dm = build_data("image_folder", path=tmp_path / "imgs", image_size=8, val_fraction=0.34)
    clone = pickle.loads(pickle.dumps(dm.val))
    assert torch.equal(clone[0]["pixel_values"], dm.val[0]["pixel_values"])


def test_command_line_lists_and_builds(capsys):
    from kanzoo.data.__main__ import main

    assert main([]) == 0
    assert "shakespeare" in capsys.readouterr().out
    assert main(["digits", "image_size=16"]) == 0
    assert "pixel_values: (1, 16, 16)" in capsys.readouterr().out
    from kanzoo._cli import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(main, ["digitz"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Did you mean 'digits'" in err and err.count("\n") == 1
