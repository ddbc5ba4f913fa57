"""The benchmark scripts run end to end on tiny settings (their numbers are not checked here:
speed is measured by running them, never asserted in tests)."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def test_models_benchmark_times_every_task_kind():
    """One model per task kind (forecasting, regression, PDE, classification) through the real
    training step; the table has one row per pair with a finite positive ratio."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "models.py"), "--models", "kan_tsf_tiny", "kan_fit_tiny",
           "kan_pinn_tiny", "conv_kan_tiny", "--reps", "1", "--warmup", "0", "--batch-size", "4"]  # fmt: skip
    env = {"KANZOO_COMPILE": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| kan_", "| conv_"))]
    names = ["kan_tsf_tiny", "kan_fit_tiny", "kan_pinn_tiny", "conv_kan_tiny"]
    assert [r.split("|")[1].strip() for r in rows] == names
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "4"  # the batch column
        assert float(cells[-1]) > 0
    assert "CPU:" in out.stdout and "keep_freed_memory=False" in out.stdout


def test_layers_benchmark_drops_a_candidate_slower_than_the_limit():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import layers as bench
    finally:
        sys.path.pop(0)

    class Slow(nn.Module):
        def forward(self, x):
            import time

            time.sleep(0.05)
            return x * 2

    runner = bench.Runner(timer="wall", dtype="fp32", device="cpu")
    cands = {"ref": nn.Linear(3, 3), "fast": nn.Linear(3, 3), "slow": Slow()}
    dropped = list(bench.drop_slow(runner, cands, torch.randn(2, 3), limit_s=0.02))
    assert [name for name, _ in dropped] == ["slow"] and dropped[0][1] > 0.02
    assert list(cands) == ["ref", "fast"]
