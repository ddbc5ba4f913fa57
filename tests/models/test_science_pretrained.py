"""The shipped forecasting / formula-fit / PINN checkpoints load by name and still do their task.

Scored here on their embedded data with code independent of the model cards (numpy for the
forecast errors, the closed-form PDE solution, the formula itself).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import kanzoo
from kanzoo.data import build_data

SHIPPED = {
    "kan_tsf-elnino": "forecasting",
    "tsf-elnino": "forecasting",
    "kan_fit-feynman": "regression",
    "mlp_fit-feynman": "regression",
    "kan_pinn-poisson": "pde",
    "pinn-poisson": "pde",
}


def _data(name):
    summary = kanzoo.models.pretrained_dir() / name / "train_summary.json"
    cfg = json.loads(summary.read_text())["config"]["data"]
    return build_data(cfg.pop("name"), **cfg)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_loads_by_name_and_performs(name):
    if SHIPPED[name] == "forecasting":
        pytest.importorskip("statsmodels")
    assert name in kanzoo.list_pretrained()
    model = kanzoo.from_pretrained(name).eval()
    dm = _data(name)
    assert dm.task == SHIPPED[name]
    with torch.no_grad():
        if dm.task == "forecasting":
            past = torch.stack([dm.val[i]["past_values"] for i in range(len(dm.val))])
            fut = torch.stack([dm.val[i]["future_values"] for i in range(len(dm.val))]).numpy()
            pred = model(past).numpy()
            naive = np.repeat(past[:, -1:].numpy(), fut.shape[1], axis=1)  # last value
            assert ((pred - fut) ** 2).mean() < 0.6 * ((naive - fut) ** 2).mean()
        elif dm.task == "regression":
            rmse = float(np.sqrt(((model(dm.val.x).numpy() - dm.val.y.numpy()) ** 2).mean()))
            assert rmse < 0.02  # the targets span about 0.0 - 0.4
        else:
            pred, exact = model(dm.val.coords).numpy(), dm.val.target.numpy()
            assert np.linalg.norm(pred - exact) / np.linalg.norm(exact) < 0.2
