"""Benchmark specs: splits (U-KAN, GlaS official, ISIC test folder), data configs, resolution option."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from eval_helpers import make_ukan_folder

from kanzoo.eval import ukan_split
from kanzoo.eval.benchmarks import BENCHMARKS, benchmark_splits, build_benchmark, get_benchmark
from kanzoo.eval.runner import evaluate

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_data_config_matches_spec(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    spec = get_benchmark(name)
    assert cfg["name"] == name and cfg["image_size"] == spec.image_size and cfg["seed"] == 2981
    text = (CONFIGS / f"{name}.yaml").read_text()
    assert f"{spec.dirname}/masks/0/{spec.example_id}{spec.mask_suffix}" in text


def test_glas_official_split_and_ukan_override(tmp_path):
    spec = get_benchmark("glas")
    ids = sorted([f"train_{i}" for i in range(1, 6)] + [f"testA_{i}" for i in range(1, 4)] + ["testB_1"])
    s = benchmark_splits(spec, tmp_path, ids)
    assert s["train"] == [f"train_{i}" for i in range(1, 6)]
    assert sorted(s["val"]) == sorted(s["test"]) == ["testA_1", "testA_2", "testA_3", "testB_1"]
    u = benchmark_splits(spec, tmp_path, ids, protocol="ukan")
    assert (u["train"], u["val"]) == ukan_split(ids, seed=2981) and "test" not in u
    plain = benchmark_splits(spec, tmp_path, [str(i) for i in range(10)])  # renamed ids: U-KAN split
    assert plain["val"] == ukan_split([str(i) for i in range(10)])[1]


def test_isic_style_test_folder(tmp_path):
    root = tmp_path / "inputs"
    make_ukan_folder(root, name="isic2018", n=5, mask_suffix="_segmentation.png")
    # the helper writes .png images; ISIC expects .jpg, so rename images to .jpg content-wise via PIL
    from PIL import Image

    for p in (root / "isic2018" / "images").glob("*.png"):
        Image.open(p).convert("RGB").save(p.with_suffix(".jpg"))
        p.unlink()
    test_root = tmp_path / "t"
    make_ukan_folder(test_root, name="x", n=3, mask_suffix="_segmentation.png", seed=1)
    (test_root / "x" / "images").rename(root / "isic2018" / "images_test")
    (test_root / "x" / "masks").rename(root / "isic2018" / "masks_test")
    for p in (root / "isic2018" / "images_test").glob("*.png"):
        Image.open(p).convert("RGB").save(p.with_suffix(".jpg"))
        p.unlink()
    dm = build_benchmark("isic2018", root=root, image_size=32)
    assert len(dm.train) == 4 and len(dm.val) == 1 and len(dm.test) == 3
    assert dm.test[0]["mask"].shape == (32, 32)


def test_resolution_train_scores_resized_masks(tmp_path):
    make_ukan_folder(tmp_path / "inputs", n=6)
    data = {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 32}
    from torch import nn

    class AllForeground(nn.Module):
        def forward(self, x):
            return x[:, :1] * 0 + 3.0

    r = evaluate(AllForeground(), data, resolution="train", output_dir=tmp_path / "o", progress=False,
                 hd95_convention="max", num_overlays=0)  # fmt: skip
    dm = build_benchmark("busi", root=tmp_path / "inputs", image_size=32)
    ref = np.mean([dm.val[i]["mask"].float().mean().item() for i in range(len(dm.val))])
    assert r["results"][0]["metrics"]["iou"] == pytest.approx(ref)
    assert r["resolution"] == "train" and r["hd95_convention"] == "max"


def test_train_config_with_benchmark_data_builds_model_and_data(tmp_path):
    """data=busi composes with configs/train.yaml and sizes a KAN-UNet from the benchmark."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kanzoo.train.build import build_model_and_data

    make_ukan_folder(tmp_path / "inputs", n=5)
    overrides = ["model=kan_unet", "data=busi", f"data.root={tmp_path / 'inputs'}", "data.image_size=32",
                 "trainer=smoke"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONFIGS.parent), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name="train", overrides=overrides), resolve=True)
    name, model, dm = build_model_and_data(cfg)
    assert dm.info["name"] == "busi" and len(dm.train) == 4 and len(dm.val) == 1
    out = model.eval()(dm.val[0]["pixel_values"][None])
    assert out.shape == (1, 1, 32, 32)
