"""The default runs of the forecasting and scientific families, end to end through train.py and evaluate.py.

Slow (minutes each): ``python -m pytest -m slow tests/test_science_default_runs.py``. Each test trains
the KAN model with its default recipe (``python train.py model=<name>``, one thread) and scores the
final checkpoint with ``evaluate.py``; the thresholds are far from the measured values (README) and
far better than an untrained model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
        KANZOO_COMPILE="0", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )  # fmt: skip
    return env


def _train_and_evaluate(tmp_path: Path, model: str, *extra: str) -> dict:
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "train.py", f"model={model}", f"run_dir={run}", "trainer.progress=false",
         "trainer.num_threads=1", *extra],
        cwd=REPO, env=_env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"checkpoint={run / 'final'}", f"output_dir={out}", "split=test",
         "progress=false"],
        cwd=REPO, env=_env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "wrote" in proc.stdout
    return json.loads((out / "metrics.json").read_text())["results"][0]["metrics"]


@pytest.mark.slow
def test_default_kan_tsf_run_beats_the_seasonal_naive_forecast(tmp_path):
    pytest.importorskip("statsmodels")
    m = _train_and_evaluate(tmp_path, "kan_tsf")
    assert m["mase"] < m["mase_seasonal_naive"] and m["mase"] < 1.2
    assert len(m["per_horizon"]["model"]["mase"]) == 12


@pytest.mark.slow
def test_default_kan_fit_run_fits_the_formula_and_exports_it(tmp_path):
    m = _train_and_evaluate(tmp_path, "kan_fit")
    assert m["rmse"] < 2e-3  # the targets of I.6.2 span about 0.0 - 0.4
    assert m["formula"] and "sigma" in m["formula"] and "theta" in m["formula"]
    assert m["symbolic_rmse"] < 0.05


@pytest.mark.slow
def test_default_kan_pinn_run_solves_poisson(tmp_path):
    m = _train_and_evaluate(tmp_path, "kan_pinn")
    assert m["rel_l2"] < 0.1  # an untrained network is at about 1
