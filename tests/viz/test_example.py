"""The symbolic-regression example end to end (train, prune, symbolify, formula): slow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_symbolic_fit_example_discovers_the_formula(tmp_path):
    env = dict(os.environ, KANZOO_COMPILE="0")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "symbolic_fit.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "pruned to widths [2, 1, 1]" in out
    formula = out.split("f(x, y) = ")[1].splitlines()[0]
    assert "exp(" in formula and "sin(" in formula and "**2" in formula
    final_rmse = float(out.split("after fine-tuning the symbolic parameters: RMSE ")[1].split()[0])
    assert final_rmse < 0.02
    for name in ("network_trained.png", "network_pruned.png", "network_symbolic.png", "edges_layer0.png"):
        assert (tmp_path / name).stat().st_size > 1000
