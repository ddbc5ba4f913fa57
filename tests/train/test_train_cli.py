"""`python train.py ...` end to end (subprocess): smoke runs of an LM, a classifier and a segmenter
in one Hydra multirun, and the one-line error for bad input."""

import json
import subprocess

import pytest
import torch
from _proc import REPO, env, python


def test_multirun_smoke_trains_lm_classification_and_segmentation(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        *python(),
        str(REPO / "train.py"),
        "-m",
        "model=kan_gpt,conv_kan,kan_unet",
        "trainer=smoke",
        "logger=jsonl",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finals = [line for line in proc.stdout.splitlines() if line.startswith("Final checkpoint: ")]
    assert len(finals) == 3
    assert proc.stdout.strip().splitlines()[-1] == finals[-1]

    import kanzoo

    for job, task in [("1_conv_kan", "classification"), ("2_kan_unet", "segmentation"), ("0_kan_gpt", "lm")]:
        final = sweep / job / "final"
        assert finals.count(f"Final checkpoint: {final}") == 1
        summary = json.loads((final / "train_summary.json").read_text())
        assert summary["task"] == task and summary["steps"] == 3
        assert summary["config"]["data"]["name"] in ("shakespeare", "digits", "shapes")
        records = [json.loads(line) for line in open(sweep / job / "metrics.jsonl")]
        assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
        assert (sweep / job / "loss_curve.png").is_file()
        model = kanzoo.from_pretrained(str(final)).eval()
        with torch.no_grad():
            if task == "lm":
                assert model(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits.shape[:2] == (1, 8)
            else:
                shape = (1, 1, 16, 16) if task == "classification" else (1, 3, 64, 64)
                assert torch.isfinite(model(torch.randn(shape))).all()
    lm_final = sweep / "0_kan_gpt" / "final"
    assert any("token" in p.name for p in lm_final.iterdir()), sorted(p.name for p in lm_final.iterdir())


@pytest.mark.parametrize(
    "args, expected",
    [(["model=cnn", "data=image_folder", "data.path=/no/such/folder"], "/no/such/folder")],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, args, expected):
    proc = subprocess.run(
        [*python(), str(REPO / "train.py"), *args, "trainer=smoke", f"run_dir={tmp_path}/r"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last
    assert "Traceback" not in proc.stderr
