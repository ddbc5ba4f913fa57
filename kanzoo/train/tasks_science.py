"""Training tasks of the forecasting and scientific families: ``forecasting``, ``regression``, ``pde``.

Like the other tasks (:mod:`kanzoo.train.tasks`), evaluation accumulates additive sums so results
over a sharded validation set are exact after one all-reduce; the element-wise terms are the ones
``evaluate.py`` uses (:mod:`kanzoo.eval.forecasting`, :mod:`kanzoo.eval.science`).

Grid extension: every task here has :meth:`ScienceTask.on_step`, which the trainer calls once
before training (with the step it starts from, 0 or the resumed step) and after every optimizer
step. A model with ``apply_grid_schedule`` (``kan_fit``, ``kan_pinn``) refines its B-spline grids
when the step in its ``grid_schedule`` is reached; the replaced parameters are swapped into the
optimizer in place (their Adam moments start afresh, as with pykan's new optimizer after
``refine``). Single process only: DDP keeps its own references to the parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tasks import Task

__all__ = ["SCIENCE_TASKS", "PDE", "Forecasting", "Regression", "ScienceTask", "swap_parameters"]


def swap_parameters(optimizer: Any, replaced: dict[nn.Parameter, nn.Parameter]) -> None:
    """Point ``optimizer`` at new parameters in place of old ones (same group; state dropped)."""
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(p, p) for p in group["params"]]
    for old in replaced:
        optimizer.state.pop(old, None)


def _full(x: Tensor) -> Tensor:
    """At least float32 (half-precision outputs are upcast; float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def _distributed_world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class ScienceTask(Task):
    """Base of the tasks below: the grid-extension hook."""

    def on_step(self, model: nn.Module, step: int, optimizer: Any = None) -> None:
        """Bring the model to its structure at ``step`` (grid extension) and re-point the optimizer.

        Args:
            model: The unwrapped model.
            step: Optimizer steps taken so far.
            optimizer: The optimizer to update; None before it exists (the run's start).

        Raises:
            ValueError: A grid schedule in a multi-process run.
        """
        apply = getattr(model, "apply_grid_schedule", None)
        if apply is None:
            return
        if optimizer is None and getattr(model.config, "grid_schedule", None) and _distributed_world() > 1:
            raise ValueError(
                "model.grid_schedule (grid extension) needs a single process: DDP keeps references to "
                "the parameters that refinement replaces; train without it or on one process"
            )
        replaced = apply(step)
        if replaced and optimizer is not None:
            swap_parameters(optimizer, replaced)


class Forecasting(ScienceTask):
    """Forecasting: MSE on standardised windows; reports MSE, MAE (standardised), sMAPE and MASE."""

    name = "forecasting"
    unit = "windows"
    sum_keys = ("mse", "mae", "smape", "mase", "n")
    monitor = "val_mase"
    monitor_max = False

    def loss(self, model, batch):
        pred = _full(model(batch["past_values"]))
        return F.mse_loss(pred, batch["future_values"].to(pred.dtype))

    def count(self, batch):
        return int(batch["past_values"].shape[0])

    def eval_sums(self, model, batch):
        from kanzoo.eval.forecasting import error_terms

        pred = model(batch["past_values"]).float().detach()
        terms = error_terms(
            pred,
            batch["future_values"],
            loc=batch["loc"],
            scale=batch["scale"],
            mase_scale=batch["mase_scale"],
        )
        out = {k: float(v.sum()) for k, v in terms.items()}
        out["n"] = float(pred.numel())
        return out

    def finalize(self, sums):
        n = max(sums["n"], 1.0)
        return {
            "val_loss": sums["mse"] / n,
            "val_mae": sums["mae"] / n,
            "val_smape": sums["smape"] / n,
            "val_mase": sums["mase"] / n,
        }


class Regression(ScienceTask):
    """Regression (formula fitting): MSE loss; reports RMSE."""

    name = "regression"
    sum_keys = ("se", "n")
    monitor = "val_rmse"
    monitor_max = False

    def loss(self, model, batch):
        pred = _full(model(batch["x"]))
        return F.mse_loss(pred, batch["y"].to(pred.dtype))

    def count(self, batch):
        return int(batch["x"].shape[0])

    def eval_sums(self, model, batch):
        from kanzoo.eval.science import regression_sums

        return regression_sums(model(batch["x"]).float().detach(), batch["y"])

    def finalize(self, sums):
        mse = sums["se"] / max(sums["n"], 1.0)
        return {"val_loss": mse, "val_rmse": math.sqrt(mse)}


def _requires_grad(coords: Tensor, model: nn.Module) -> Tensor:
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else coords.dtype
    return coords.detach().to(dtype).clone().requires_grad_(True)


class PDE(ScienceTask):
    """Physics-informed training: mean squared PDE residual + ``boundary_weight`` x boundary MSE.

    The residual is taken by autograd through the network (second derivatives included), at the
    batch's collocation points; the problem comes from the batch (``batch["pde"]``, see
    :mod:`kanzoo.data.science`). Interior and boundary points go through ONE forward pass (the
    network is point-wise), which keeps DDP's one-forward-per-backward contract. Validation
    reports the relative L2 error against the exact solution and the residual on the grid.
    """

    name = "pde"
    unit = "points"
    sum_keys = ("se", "ref", "res", "n")
    monitor = "val_rel_l2"
    monitor_max = False

    def loss(self, model, batch):
        from kanzoo.data.science import get_pde

        problem = get_pde(batch["pde"])
        interior = batch["coords"]
        n = interior.shape[0]
        c = _requires_grad(torch.cat([interior, batch["boundary_coords"].to(interior)]), model)
        u = model(c)
        residual = problem.residual(u, c, create_graph=True)[:n]
        boundary = (u[n:] - batch["boundary_values"].to(u)).square().mean()
        return _full(residual).square().mean() + float(batch["boundary_weight"]) * _full(boundary)

    def count(self, batch):
        return int(batch["coords"].shape[0])

    def eval_sums(self, model, batch):
        from kanzoo.data.science import get_pde
        from kanzoo.eval.science import pde_error_sums

        problem = get_pde(batch["pde"])
        with torch.enable_grad():  # the trainer evaluates under no_grad; the residual needs autograd
            c = _requires_grad(batch["coords"], model)
            u = model(c)
            res = problem.residual(u, c, create_graph=False).detach()
        out = pde_error_sums(u.detach().float(), batch["target"])
        out["res"] = float(res.double().square().sum())
        return out

    def finalize(self, sums):
        n = max(sums["n"], 1.0)
        return {
            "val_loss": sums["se"] / n,
            "val_rel_l2": math.sqrt(sums["se"] / max(sums["ref"], 1e-300)),
            "val_residual": sums["res"] / n,
        }


SCIENCE_TASKS: dict[str, type[Task]] = {"forecasting": Forecasting, "regression": Regression, "pde": PDE}
