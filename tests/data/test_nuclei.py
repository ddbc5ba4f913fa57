"""data=nuclei: the shipped DSB-2018 sample (provenance checked), float32 tiles, a KAN-UNet step."""

import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kanzoo.data import build_data
from kanzoo.data.nuclei import SAMPLE, load_nuclei_arrays

ROOT = Path(__file__).resolve().parents[2]
NOTE = SAMPLE.parent / "NUCLEI_LICENSE.md"


def _recorded_hash(kind: str) -> str:
    """The SHA-256 of the decoded uint16 array recorded in the license note."""
    text = " ".join(NOTE.read_text().split())
    match = re.search(rf"{kind} `([0-9a-f]{{64}})`", text.split("decoded uint16")[1])
    assert match, f"no {kind} hash in {NOTE}"
    return match.group(1)


def test_shipped_sample_matches_the_checksums_in_its_license_note():
    assert NOTE.is_file() and "BSD 3-Clause" in NOTE.read_text() and "BBBC038" in NOTE.read_text()
    with np.load(SAMPLE, allow_pickle=False) as arrays:
        image, mask = arrays["image"], arrays["mask"]
    assert image.shape == mask.shape == (512, 512)
    assert hashlib.sha256(image.astype(np.uint16).tobytes()).hexdigest() == _recorded_hash("image")
    assert hashlib.sha256(mask.astype(np.uint16).tobytes()).hexdigest() == _recorded_hash("mask")


@pytest.mark.skipif(importlib.util.find_spec("stardist") is None, reason="stardist not installed")
def test_shipped_sample_equals_the_stardist_tiffs_it_came_from():
    import tifffile

    from kanzoo.data.corpora import package_data_dir

    root = package_data_dir("stardist", "stardist/data/images")
    with np.load(SAMPLE, allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["image"], tifffile.imread(root / "img2d.tif"))
        np.testing.assert_array_equal(arrays["mask"], tifffile.imread(root / "mask2d.tif"))
    # the data_dir path (TIFFs) and the shipped path give the same arrays
    a, b = load_nuclei_arrays(), load_nuclei_arrays(root)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_tiles_are_float32_and_normalised_by_percentiles():
    img, inst = load_nuclei_arrays()
    assert img.dtype == np.float32 and inst.dtype == np.int64
    with np.load(SAMPLE, allow_pickle=False) as arrays:
        raw = arrays["image"].astype(np.float64)
    lo, hi = np.percentile(raw, [1.0, 99.8])
    np.testing.assert_allclose(img, np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-6)
    dm = build_data("nuclei")
    item = dm.train[0]
    assert item["pixel_values"].dtype == torch.float32 and item["mask"].dtype == torch.long


def test_kan_unet_trains_on_nuclei():
    """The composed `train.py model=kan_unet data=nuclei` config builds and takes training steps
    (it failed with "expected scalar type Double but found Float" under NumPy 2)."""
    from kanzoo.train.build import build_model_and_data
    from kanzoo.train.tasks import get_task

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=kan_unet", "data=nuclei"])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    _, model, dm = build_model_and_data(cfg)
    batch = next(iter(dm.loader("train", batch_size=4)))
    task = get_task("segmentation")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(2):
        loss = task.loss(model, batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
