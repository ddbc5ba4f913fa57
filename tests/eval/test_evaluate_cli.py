"""evaluate.py and python -m kanzoo.viz: every user-input problem is one ``error:`` line and exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from kanzoo._cli import UserInputError, run_main
from kanzoo.eval import cli

REPO = Path(__file__).resolve().parents[2]


def _fails(main, argv, capsys):
    """Run an entry point in-process; return its one error line (asserting exit 2 and one line)."""
    with pytest.raises(SystemExit) as exc:
        run_main(main, argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["max_samples=-1"], "max_samples must be an integer >= 1, got -1"),
        (["max_samples=2.5"], "max_samples must be an integer >= 1, got 2.5"),
        (["batch_size=abc"], "batch_size must be an integer >= 1, got 'abc'"),
        (["batch_size=0"], "batch_size must be an integer >= 1, got 0"),
        (["num_overlays=-3"], "num_overlays must be an integer >= 0"),
        (["threshold=2"], "threshold must be a number in (0, 1), got 2"),
        (["threshold=nan"], "threshold must be a number in (0, 1)"),
        (["split=tset"], "split must be one of val, test, train, got 'tset' (did you mean 'test'?)"),
        (["protocol=ukann"], "did you mean 'ukan'?"),
        (["progress=maybe"], "progress must be true or false, got 'maybe'"),
        (["device=tpu"], "device must be auto, cpu, cuda, cuda:<index> or mps, got 'tpu'"),
        (["max_sample=3"], "unknown evaluate setting 'max_sample' (did you mean 'max_samples'?)"),
        (["data=digts"], "unknown data 'digts'; did you mean digits?"),
        (["data=digits", "data.image_size=0"], "image_size must be an integer >= 1"),
        (["data=digits", "data.image_sise=16"], "has no option 'image_sise' (did you mean 'image_size'?)"),
        (["--cfg", "job"], "unknown option '--cfg'"),
        (["overlays"], "arguments are key=value settings"),
        (["compare=/no/such/checkpoint"], "/no/such/checkpoint"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    line = _fails(cli.main, ["checkpoint=cnn-digits", f"output_dir={out}", "progress=false", *args], capsys)
    assert expected in line
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary folder


def test_missing_checkpoint_and_cuda_without_gpu(tmp_path, capsys):
    line = _fails(cli.main, [f"checkpoint={tmp_path / 'nope'}"], capsys)
    assert str(tmp_path / "nope") in line
    assert "checkpoint=" in _fails(cli.main, ["split=val"], capsys)
    if not torch.cuda.is_available():
        line = _fails(cli.main, ["checkpoint=cnn-digits", "device=cuda"], capsys)
        assert line == "error: device=cuda but no CUDA GPU is visible; use device=cpu or device=auto"


def test_output_dir_that_is_a_file_leaves_nothing_beside_it(tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    line = _fails(cli.main, ["checkpoint=cnn-digits", f"output_dir={target}", "progress=false"], capsys)
    assert "is an existing file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]  # no hidden .report.txt.tmp-*
    assert target.read_text() == "keep me"
    # a parent that is a file: the same, one line and nothing created
    line = _fails(cli.main, ["checkpoint=cnn-digits", f"output_dir={target}/sub", "progress=false"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_nan_pixels_are_refused_naming_the_sample(tmp_path):
    from kanzoo.data import DataModule
    from kanzoo.eval.runner import evaluate

    class Const(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nan_to_num(x[:, :1]) + self.w

    items = [{"pixel_values": torch.rand(3, 8, 8), "mask": torch.zeros(8, 8, dtype=torch.long), "id": f"p{i}"}
             for i in range(4)]  # fmt: skip
    items[2]["pixel_values"][1, 3, 3] = float("nan")
    dm = DataModule(task="segmentation", train=_Items(items), val=_Items(items), info={"num_classes": 2})
    with pytest.raises(UserInputError, match=r"^sample p2: the model input holds 1 NaN or infinite value"):
        evaluate(Const(), dm, output_dir=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
    cls_items = [{"pixel_values": torch.rand(3, 4, 4), "labels": torch.tensor(0)} for _ in range(3)]
    cls_items[1]["pixel_values"][0, 0, 0] = float("inf")
    cls = DataModule(
        task="classification", train=_Items(cls_items), val=_Items(cls_items), info={"num_classes": 2}
    )
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    with pytest.raises(UserInputError, match="sample 1: the model input holds 1 NaN or infinite"):
        evaluate(clf, cls, output_dir=tmp_path / "o", progress=False)


def test_help_prints_usage(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python evaluate.py checkpoint=")
    for setting in ("max_samples", "overlay_max_side", "device", "threshold"):
        assert f"  {setting}=" in text
    assert cli.main(["-h"]) == 0


def test_viz_cli_errors_and_help(tmp_path, capsys):
    from kanzoo.viz.__main__ import main as viz_main

    line = _fails(viz_main, [f"checkpoint={tmp_path / 'missing'}"], capsys)
    assert str(tmp_path / "missing") in line
    assert "unknown argument 'colour'" in _fails(viz_main, ["checkpoint=x", "colour=red"], capsys)
    assert "max_edges must be an integer >= 1" in _fails(viz_main, ["checkpoint=x", "max_edges=0"], capsys)
    assert "taps must be one of sum, each" in _fails(viz_main, ["checkpoint=x", "taps=all"], capsys)
    for flag in ("--help", "-h"):
        assert viz_main([flag]) == 0
        assert "python -m kanzoo.viz checkpoint=" in capsys.readouterr().out


def _run(cmd, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "KANZOO_COMPILE": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    assert list(Path(cwd).iterdir()) == []


def test_evaluate_script_exits_2_with_one_line(tmp_path):
    _run([str(REPO / "evaluate.py"), "checkpoint=cnn-digits", "max_samples=-1"], tmp_path)


@pytest.mark.slow
def test_viz_module_exits_2_with_one_line(tmp_path):
    _run(["-m", "kanzoo.viz", f"checkpoint={tmp_path / 'missing'}"], tmp_path)
