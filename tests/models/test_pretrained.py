"""Checkpoints shipped inside the package load by name and still do their task.

The scores are computed here, on the embedded validation data, independently of the numbers
recorded in each model card.
"""

import json
import math

import pytest
import torch

import kanzoo
from kanzoo.data import build_data
from kanzoo.eval import segmentation_scores

SHIPPED = {
    "kan_gpt-shakespeare": "lm",
    "gpt-shakespeare": "lm",
    "conv_kan-digits": "classification",
    "cnn-digits": "classification",
    "kan_vit-digits": "classification",
    "vit-digits": "classification",
    "kan_unet-shapes": "segmentation",
    "unet-shapes": "segmentation",
}


def test_list_pretrained_names_every_shipped_checkpoint():
    assert set(SHIPPED) <= set(kanzoo.list_pretrained())


def _data_for(name):
    card = kanzoo.models.pretrained_dir() / name / "train_summary.json"
    cfg = json.loads(card.read_text())["config"]["data"]
    data_name = cfg.pop("name")
    return build_data(data_name, **cfg)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_loads_by_name_and_performs(name):
    model = kanzoo.from_pretrained(name).eval()
    dm = _data_for(name)
    assert dm.task == SHIPPED[name]
    batch = next(iter(dm.loader("val", batch_size=64, shuffle=False)))
    with torch.no_grad():
        if dm.task == "lm":
            out = model(batch["input_ids"][:16], labels=batch["labels"][:16])
            # An untrained model sits at ln(vocab); the shipped ones are far below it.
            assert out.loss.item() < math.log(dm.info["vocab_size"]) - 1.5
        elif dm.task == "classification":
            acc = (model(batch["pixel_values"]).argmax(-1) == batch["labels"]).float().mean().item()
            assert acc > 0.8
        else:
            logits = model(batch["pixel_values"][:16])
            preds = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            scores = segmentation_scores(preds, batch["mask"][:16], num_classes=2)
            assert scores["iou_pooled"] > 0.5


def test_evaluate_takes_a_shipped_name_and_finds_its_data(tmp_path):
    from kanzoo.eval import evaluate

    out = tmp_path / "eval"
    evaluate("cnn-digits", None, output_dir=out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "digits"
    top1 = metrics["results"][0]["metrics"]["top1"]
    assert top1 > 0.9


# Every shipped checkpoint is trained by configs/experiment/pretrained/<name>.yaml.
FROM_EXPERIMENT = sorted(p.name for p in kanzoo.models.pretrained_dir().iterdir() if p.is_dir())


@pytest.mark.parametrize("name", FROM_EXPERIMENT)
def test_shipped_checkpoint_was_trained_by_its_committed_experiment_config(name):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment=pretrained/{name}"])
    composed = OmegaConf.to_container(cfg, resolve=True)
    summary = json.loads((kanzoo.models.pretrained_dir() / name / "train_summary.json").read_text())
    recorded = dict(summary["config"])
    # the output directory is the only setting that is not part of the experiment
    composed.pop("run_dir"), recorded.pop("run_dir")
    # trainer settings added after the checkpoints were made; none changes what a run trains
    for key in ("dist_timeout_s", "heartbeat_s", "latest_link"):
        composed["trainer"].pop(key, None), recorded["trainer"].pop(key, None)
    assert recorded == composed
    card = (kanzoo.models.pretrained_dir() / name / "README.md").read_text()
    assert f"python train.py experiment=pretrained/{name}" in card
