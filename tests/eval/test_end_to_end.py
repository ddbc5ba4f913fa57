"""train.py (trainer=smoke) -> evaluate.py on the embedded shapes data and on a U-KAN layout folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import make_ukan_folder

from kanzoo.eval import ukan_split
from kanzoo.eval.runner import evaluate

REPO = Path(__file__).resolve().parents[2]


def _run(args, cwd):
    env = {**os.environ, "KANZOO_COMPILE": "0", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_smoke_checkpoint_on_embedded_shapes_via_cli(tmp_path):
    run = tmp_path / "run"
    _run(
        [str(REPO / "train.py"), "model=kan_unet", "trainer=smoke", "logger=none", "data.num_train=8",
         "data.num_val=6", "data.num_test=4", f"run_dir={run}"],
        cwd=tmp_path,
    )  # fmt: skip
    out = tmp_path / "eval"
    proc = _run(
        [str(REPO / "evaluate.py"), f"checkpoint={run / 'final'}", f"output_dir={out}", "progress=false"],
        cwd=tmp_path,
    )
    assert "data=shapes" in proc.stdout and "iou" in proc.stdout  # data taken from the checkpoint's summary
    metrics = json.loads((out / "metrics.json").read_text())
    m = metrics["results"][0]["metrics"]
    assert metrics["task"] == "segmentation" and m["num_samples"] == 6
    assert 0.0 <= m["iou"] <= 1.0 and 0.0 <= m["dice"] <= 1.0
    summary = json.loads((run / "final" / "train_summary.json").read_text())
    assert m["params"] == summary["num_parameters"]
    assert len(list(out.glob("overlay_*.png"))) == 4
    # a classification dataset for this checkpoint is refused with a clear message, nothing written
    bad = tmp_path / "bad"
    with pytest.raises(ValueError, match="segmentation model but data 'digits' is a classification dataset"):
        evaluate(str(run / "final"), "digits", output_dir=bad, progress=False)
    assert not bad.exists()


@pytest.mark.slow
def test_smoke_checkpoint_on_ukan_folder_original_resolution(tmp_path):
    root, masks = make_ukan_folder(tmp_path / "inputs", n=10)
    run = tmp_path / "run"
    _run(
        [str(REPO / "train.py"), "model=unet", "trainer=smoke", "logger=none", "data=segmentation_folder",
         f"data.root={root}", "data.layout=ukan", "data.seed=2981", f"run_dir={run}"],
        cwd=tmp_path,
    )  # fmt: skip
    r = evaluate(
        str(run / "final"),
        {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 64},
        output_dir=tmp_path / "eval",
        progress=False,
    )
    m = r["results"][0]["metrics"]
    val_ids = ukan_split(list(masks), seed=2981)[1]
    assert m["num_samples"] == len(val_ids) and m["evaluated_resolution"] == "original"
    # the per-image IoU list is consistent with the pooled/summary numbers at original sizes
    assert np.mean(m["per_image_iou"]) == pytest.approx(m["iou"])
    sizes = [masks[i].shape for i in val_ids]
    assert len(set(sizes)) == len(sizes)  # the val images really have different original sizes
    # the training split written by the data code is U-KAN's, so the benchmark split agrees with it
    split = json.loads((root / "splits_seed2981.json").read_text())
    assert split["val"] == val_ids
