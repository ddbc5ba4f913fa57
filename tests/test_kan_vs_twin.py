"""The results-table experiments (configs/experiment/kan_vs_twin/) and benchmarks/kan_vs_twin.py's report.

No training here: the configs are composed for both sides of each pair and the models built, and the
table logic runs on fake finished runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kanzoo.train.build import build_model_and_data

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
TASKS = sorted(p.stem for p in (CONFIG_DIR / "experiment" / "kan_vs_twin").glob("*.yaml"))


def _script():
    spec = importlib.util.spec_from_file_location("kan_vs_twin", REPO / "benchmarks" / "kan_vs_twin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compose(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_every_task_has_an_experiment_and_the_script_reads_its_pair():
    assert TASKS == ["conv", "fit", "lm", "pinn", "tsf", "unet", "vit"]
    pairs = _script().PAIRS
    assert sorted(pairs) == TASKS
    for kan, twin in pairs.values():
        assert kan.startswith(("kan_", "conv_kan")) and twin.endswith("_matched")


@pytest.mark.parametrize("task", TASKS)
def test_both_sides_share_everything_but_the_model_and_are_parameter_matched(task):
    kan, twin = _script().PAIRS[task]
    cfgs = {m: _compose([f"experiment=kan_vs_twin/{task}", f"model={m}", "seed=1"]) for m in (kan, twin)}
    a, b = cfgs[kan], cfgs[twin]
    for cfg in (a, b):  # the runs/<model>/latest link is named after the model, like run_dir
        cfg["trainer"].pop("latest_link")
    for key in ("data", "recipe", "optim", "trainer", "seed"):
        assert a[key] == b[key], key
    assert a["seed"] == 1 and a["trainer"]["device"] == "cpu"
    counts = {}
    for model, cfg in cfgs.items():
        name, net, _ = build_model_and_data(cfg)
        counts[model] = sum(p.numel() for p in net.parameters())
    assert name.endswith("_matched")
    assert abs(counts[kan] - counts[twin]) <= 0.05 * counts[kan], counts


def _fake_run(root: Path, model: str, seed: int, task: str, metric: float, speed: float, params: int) -> None:
    final = root / f"{model}_seed{seed}" / "final"
    final.mkdir(parents=True)
    name = {"lm": "val_loss", "classification": "val_acc", "segmentation": "val_iou"}[task]
    summary = {
        "task": task,
        "final_metrics": {name: metric},
        "samples_seen": speed * 10,
        "train_time_s": 10.0,
        "num_parameters": params,
    }
    (final / "train_summary.json").write_text(json.dumps(summary))


def test_table_reports_mean_std_speed_and_time_ratio(tmp_path):
    script = _script()
    kan, twin = script.PAIRS["conv"]
    for seed, acc in zip((0, 1, 2), (0.90, 0.92, 0.94)):
        _fake_run(tmp_path, kan, seed, "classification", acc, speed=100.0, params=1000)
        _fake_run(tmp_path, twin, seed, "classification", acc - 0.1, speed=300.0, params=990)
    s = script.summarize(kan, [0, 1, 2], tmp_path)
    assert s["mean"] == pytest.approx(0.92) and s["std"] == pytest.approx(0.02) and s["n"] == 3
    lines = script.table([0, 1, 2], tmp_path, ["conv", "lm"]).splitlines()
    kan_row = next(line for line in lines if f"| {kan} |" in line)
    assert "0.9200 ± 0.0200" in kan_row and "| 100 |" in kan_row and "3.00×" in kan_row
    twin_row = next(line for line in lines if f"| {twin} |" in line)
    assert "0.8200 ± 0.0200" in twin_row and "1.00×" in twin_row and "990" in twin_row
    assert sum("not run" in line for line in lines) == 2  # the lm pair has no runs
    one = script.summarize(twin, [0], tmp_path)
    assert one["n"] == 1 and math.isnan(one["std"])
