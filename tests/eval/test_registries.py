"""A new task plugs into training and evaluation with one registration line each."""

import json

import pytest
import torch
from torch import nn

from kanzoo.data import DataModule
from kanzoo.eval import evaluators
from kanzoo.eval.runner import evaluate
from kanzoo.train import tasks


class ToyTask(tasks.Task):
    name = "toy_regression"
    sum_keys = ("se", "n")

    def loss(self, model, batch):
        return ((model(batch["x"]) - batch["y"]) ** 2).mean()

    def count(self, batch):
        return int(batch["x"].shape[0])

    def eval_sums(self, model, batch):
        return {"se": float(((model(batch["x"]) - batch["y"]) ** 2).sum()), "n": float(batch["x"].numel())}

    def finalize(self, sums):
        return {"val_loss": sums["se"] / max(sums["n"], 1.0)}


def toy_evaluator(model, dm, split, ctx):
    batch = next(iter(evaluators.split_loader(dm, split, ctx.cfg.batch_size)[1]))
    with torch.no_grad():
        mse = float(((model(batch["x"]) - batch["y"]) ** 2).mean())
    assert ctx.common()["batch_size"] == ctx.cfg.batch_size
    return {"mse": mse, "num_samples": int(batch["x"].shape[0])}, []


@pytest.fixture
def registered():
    tasks.register_task(ToyTask)
    evaluators.register_evaluator("toy_regression", toy_evaluator)
    yield
    tasks._TASKS.pop("toy_regression")
    evaluators._EVALUATORS.pop("toy_regression")


def test_a_registered_task_trains_and_evaluates(registered, tmp_path):
    assert "toy_regression" in tasks.list_tasks() and "toy_regression" in evaluators.list_evaluators()
    task = tasks.get_task("toy_regression")
    x = torch.linspace(-1, 1, 12)[:, None]
    items = [{"x": x[i], "y": 3 * x[i]} for i in range(12)]
    dm = DataModule(task="toy_regression", train=items, val=items)
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.zero_()
    assert task.finalize(task.eval_sums(model, {"x": x, "y": 3 * x}))["val_loss"] == pytest.approx(0.0)
    r = evaluate(model, dm, output_dir=tmp_path / "o", progress=False, batch_size=4)
    assert r["task"] == "toy_regression" and r["results"][0]["metrics"]["mse"] == pytest.approx(0.0)
    assert "mse" in r["table"]  # a task without a table entry shows its scalar metrics
    assert (
        json.loads((tmp_path / "o" / "metrics.json").read_text())["results"][0]["metrics"]["num_samples"] == 4
    )


def test_registries_refuse_a_second_owner_and_unknown_names(registered):
    class Other(ToyTask):
        pass

    with pytest.raises(ValueError, match="task 'toy_regression' is already registered"):
        tasks.register_task(Other)
    with pytest.raises(ValueError, match="already has an evaluator"):
        evaluators.register_evaluator("toy_regression", lambda *a: ({}, []))
    with pytest.raises(ValueError, match="unknown task 'detection'; available: .*segmentation"):
        tasks.get_task("detection")
    with pytest.raises(ValueError, match="no evaluator for task 'detection'"):
        evaluators.get_evaluator("detection")
