"""A few training steps on EVERY embedded dataset (``list_datasets(embedded=True)``), in process.

Each dataset is composed from its ``configs/data/<name>.yaml`` exactly as ``python train.py
data=<name> model=<family> trainer=smoke`` does, with a small model of the dataset's task and a
smaller corpus/sample count where the builder has such a setting. A dataset registered with
``embedded=True`` is picked up here without editing this file.
"""

import math
from pathlib import Path

import pytest
import torch
import yaml

from kanzoo.data import build_data, list_datasets
from kanzoo.data.base import builder_parameters

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# smaller, still real, data where the builder allows it
SMALL = {"max_chars": 30000, "num_train": 16, "num_val": 8, "num_test": 0}
# the plain twin of each task is the cheapest model to train for a few steps
PREFERRED = {"lm": "gpt", "classification": "cnn", "segmentation": "unet"}


def _model_config_for(task: str) -> str:
    if (CONFIGS / "model" / f"{PREFERRED.get(task, '-')}.yaml").is_file():
        return PREFERRED[task]
    for path in sorted((CONFIGS / "model").glob("*.yaml")):
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        if model.get("task") == task:
            return path.stem
    raise AssertionError(f"no configs/model/*.yaml trains a {task} model")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_embedded_datasets_are_the_documented_ones():
    assert {"shakespeare", "pydoc", "digits", "shapes", "nuclei"} <= set(list_datasets(embedded=True))
    for name in list_datasets(embedded=True):
        assert (CONFIGS / "data" / f"{name}.yaml").is_file(), f"embedded dataset {name} has no config file"


@pytest.mark.parametrize("name", list_datasets(embedded=True))
def test_a_few_training_steps_on_every_embedded_dataset(name, tmp_path, one_thread):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kanzoo.train.build import build_trainer

    params = builder_parameters(name) or {}
    small = {k: v for k, v in SMALL.items() if k in params}
    task = build_data(name, **small).task
    overrides = [f"data={name}", f"model={_model_config_for(task)}", "trainer=smoke", "logger=none"]
    overrides += [f"data.{k}={v}" for k, v in small.items()]
    overrides += [f"run_dir={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.eval_max_batches=1"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    trainer = build_trainer(resolved, run_dir=tmp_path / "run")
    final = trainer.fit()
    assert (Path(final) / "model.safetensors").is_file()
    losses = [r["loss"] for r in trainer.history if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert any(k.startswith("val_") for r in trainer.history for k in r)  # the final evaluation ran
