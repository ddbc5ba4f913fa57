"""The CPU-testable parts of benchmarks/gpu_check.py: arguments, output parsing, the table and
the message without a CUDA device."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"_bench_{name}"] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return mod


gc = _load("gpu_check")


def test_parse_args_defaults_and_errors(capsys):
    args = gc.parse_args([])
    assert args.families == list(gc.FAMILIES) and args.steps == 30 and not args.skip_train
    args = gc.parse_args(["--families", "kan_vit", "--steps", "5", "--skip-tests"])
    assert args.families == ["kan_vit"] and args.steps == 5 and args.skip_tests
    for bad in (["--steps", "0"], ["--families", "resnet"]):
        with pytest.raises(SystemExit) as err:
            gc.parse_args(bad)
        assert err.value.code == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_layer_rows_parsed_from_the_benchmark_table():
    common = _load("_common")
    layers_header = [
        "shape",
        "layer",
        "params",
        "fwd ms",
        "fwd+bwd ms",
        "saved MiB",
        "f+b / ref",
        "saved / ref",
        "reps",
    ]
    rows = [["64x64 b4096 G5", "kanzoo bspline", 5120, 1.0, 2.5, 0.5, 0.93, 0.4, 20],
            ["64x64 b4096 G5", "mlp (ref)", 5130, 1.1, 2.7, 1.2, 1.0, 1.0, 20]]  # fmt: skip
    text = (
        "CPU: x\n\n### KANLinear\n\n"
        + common.markdown_table(layers_header, rows)
        + "\n\n- note | not a row\n"
    )
    assert gc.layer_ratios(text) == [
        ("64x64 b4096 G5", "kanzoo bspline", "0.93"),
        ("64x64 b4096 G5", "mlp (ref)", "1.00"),
    ]
    assert gc.layer_ratios("Traceback: boom") == []


def test_pytest_summary_and_table_assembly():
    out = "....\nFAILED tests/x.py::t - boom\n==== 1 failed, 5 passed, 2 skipped in 3.1s ====\n"
    assert gc.pytest_summary(out) == "1 failed, 5 passed, 2 skipped in 3.1s"
    results = [
        gc.Result("pytest -m gpu", "tests/", False, "1 failed, 5 passed", 12.4),
        gc.Result("train.py trainer=gpu", "kan_vit, 30 steps", True, "samples_per_s=900.0", 40.0),
    ]
    lines = gc.markdown(results).splitlines()
    assert lines[0].startswith("| check | setting | ok |") and len(lines) == 4
    assert lines[2] == "| pytest -m gpu | tests/ | NO | 1 failed, 5 passed | 12 |"
    assert lines[3] == "| train.py trainer=gpu | kan_vit, 30 steps | yes | samples_per_s=900.0 | 40 |"


def test_train_detail_reads_the_run_summary(tmp_path):
    assert gc.train_detail(tmp_path) == "no train_summary.json"
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "run" / "final" / "train_summary.json").write_text(
        '{"samples_per_s": 123.45, "final_train_loss": 0.5}'
    )
    assert gc.train_detail(tmp_path) == "samples_per_s=123.5, loss=0.500"


def test_without_cuda_one_error_line_and_exit_status_2(monkeypatch, capsys):
    # The path of ``python benchmarks/gpu_check.py``: main() under kanzoo._cli.run_main.
    from kanzoo._cli import run_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as err:
        run_main(gc.main, [])
    assert err.value.code == 2
    out = capsys.readouterr()
    assert out.err.strip() == "error: " + gc.NO_CUDA and out.out == ""
