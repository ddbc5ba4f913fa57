"""configs/data/hf_image.yaml and hf_segmentation.yaml: compose with a model, build, train 3 steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from kanzoo.train.build import build_trainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _compose(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def _saved_classification(root: Path) -> Path:
    import datasets

    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, size=12)
    imgs = [Image.fromarray(np.full((10, 10, 3), v, dtype=np.uint8)) for v in values]
    feats = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["dark", "light"])}
    )
    ds = datasets.Dataset.from_dict({"img": imgs, "label": [int(v > 127) for v in values]}, features=feats)
    ds.save_to_disk(str(root / "cls"))
    return root / "cls"


def _saved_segmentation(root: Path) -> Path:
    import datasets

    rng = np.random.default_rng(1)
    imgs, masks = [], []
    for i in range(8):
        imgs.append(Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)))
        m = np.zeros((32, 32), dtype=np.uint8)
        m[i : i + 10, 4 : 4 + 2 * i + 4] = 255
        masks.append(Image.fromarray(m))
    feats = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    datasets.Dataset.from_dict({"image": imgs, "mask": masks}, features=feats).save_to_disk(str(root / "seg"))
    return root / "seg"


def test_hf_data_configs_need_their_path():
    from omegaconf.errors import MissingMandatoryValue

    for data in ("hf_image", "hf_segmentation"):
        with pytest.raises(MissingMandatoryValue):
            _compose(["model=conv_kan", f"data={data}"])


def test_hf_image_config_trains(tmp_path):
    path = _saved_classification(tmp_path)
    cfg = _compose(
        [
            "model=conv_kan",
            "data=hf_image",
            f"data.path={path}",
            "data.image_size=16",
            "trainer=smoke",
            "logger=none",
        ]
    )
    trainer = build_trainer(cfg, run_dir=tmp_path / "run")
    assert trainer.data.info["num_classes"] == 2 and trainer.data.task == "classification"
    trainer.fit()
    assert (tmp_path / "run" / "final").is_dir()


def test_hf_segmentation_config_trains(tmp_path):
    path = _saved_segmentation(tmp_path)
    cfg = _compose(
        [
            "model=kan_unet",
            "data=hf_segmentation",
            f"data.path_or_hub_name={path}",
            "data.image_size=32",
            "data.value_map={0: 0, 255: 1}",
            "trainer=smoke",
            "logger=none",
        ]
    )
    trainer = build_trainer(cfg, run_dir=tmp_path / "run")
    assert trainer.data.task == "segmentation" and trainer.data.info["num_classes"] == 2
    item = trainer.data.val[0]
    assert item["pixel_values"].shape == (3, 32, 32) and set(item["mask"].unique().tolist()) <= {0, 1}
    trainer.fit()
    assert (tmp_path / "run" / "final").is_dir()
