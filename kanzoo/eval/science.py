"""Scientific-model metrics and evaluate.py runners: formula fitting (``regression``) and PDEs (``pde``).

Regression (``kan_fit`` / ``mlp_fit`` on :mod:`kanzoo.data.science` formulas): ``rmse``, ``mse``,
``mae``, ``r2``, ``max_abs_error`` of the predictions. For a pure KAN network the runner also snaps
every edge to a library formula (:meth:`kanzoo.models.kan_fit.KANFit.symbolic_formula`, fitted on
the training inputs), reports that formula in the original variables (``formula``) and the RMSE of
the formula itself (``symbolic_rmse``).

PDE (``kan_pinn`` / ``pinn``): on the grid of the split, ``rel_l2`` = ``||u - u*||_2 / ||u*||_2``
against the closed-form solution ``u*``, ``mse``, ``max_abs_error`` and ``residual_mse`` (the mean
squared PDE residual, by autograd). The training task uses the same sums (:func:`pde_error_sums`,
:func:`regression_sums`), so trainer and evaluator agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "pde_error_sums",
    "regression_sums",
    "relative_l2",
    "report_lines",
    "run_pde",
    "run_regression",
]


def regression_sums(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Additive statistics of a regression batch: squared-error sum and element count."""
    err = pred.double() - target.double()
    return {"se": float(err.square().sum()), "n": float(err.numel())}


def pde_error_sums(pred: Tensor, exact: Tensor) -> dict[str, float]:
    """Additive statistics against an exact solution: ``se = Σ(u - u*)²``, ``ref = Σ u*²``, count."""
    pred, exact = pred.double(), exact.double()
    return {
        "se": float((pred - exact).square().sum()),
        "ref": float(exact.square().sum()),
        "n": float(exact.numel()),
    }


def relative_l2(pred: Tensor | np.ndarray, exact: Tensor | np.ndarray) -> float:
    """``||pred - exact||_2 / ||exact||_2`` over all points."""
    p, e = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(exact, dtype=np.float64).ravel()
    return float(np.linalg.norm(p - e) / np.linalg.norm(e))


def _split(dm: Any, split: str):
    ds = {"train": dm.train, "val": dm.val, "test": dm.test}.get(split)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the data has no (or an empty) {split!r} split")
    return ds


def _check_inputs(model: nn.Module, dm: Any) -> None:
    want = getattr(getattr(model, "config", None), "in_features", None)
    if want is not None and int(want) != int(dm.info["in_features"]):
        raise ValueError(
            f"the model takes {want} inputs but data {dm.info.get('name')!r} has {dm.info['in_features']}; "
            "evaluate a checkpoint trained for this data"
        )


def _timed_forward(model: nn.Module, x: Tensor, device: torch.device) -> tuple[Tensor, float]:
    with torch.no_grad():
        model(x[:8].to(device))  # warm-up
        t0 = time.perf_counter()
        out = torch.cat([model(chunk.to(device)).float().cpu() for chunk in x.split(4096)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ regression
def _raw_formula(exprs: list[Any], info: dict[str, Any]) -> str:
    """The exported formula in the original variables (inputs were scaled from their ranges to [-1, 1])."""
    from kanzoo._extras import import_extra

    sp = import_extra("sympy", needed_by=__name__)

    names = info["input_names"]
    raw = {n: sp.Symbol(n, real=True) for n in names}
    subs = {
        sp.Symbol(f"s_{n}", real=True): (2 * raw[n] - (lo + hi)) / (hi - lo)
        for n, (lo, hi) in zip(names, info["input_ranges"])
    }
    if not exprs:
        return ""
    expr = exprs[0].subs(subs)
    return str(expr.xreplace({f: sp.Float(f, 4) for f in expr.atoms(sp.Float)}))


def run_regression(
    model: nn.Module,
    dm: Any,
    split: str,
    *,
    device: torch.device,
    batch_size: int,
    picture_dir: Path,
    tag: str,
    progress: bool,
    max_samples: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """RMSE & co. of a regressor on ``split``; symbolic formula and its RMSE for pure KAN networks."""
    _check_inputs(model, dm)
    ds = _split(dm, split)
    n = len(ds) if max_samples is None else min(len(ds), int(max_samples))
    x, y = ds.x[:n], ds.y[:n]
    pred, seconds = _timed_forward(model, x, device)
    err = (pred.double() - y.double()).numpy().ravel()
    yv = y.double().numpy().ravel()
    sums = regression_sums(pred, y)
    metrics: dict[str, Any] = {
        "rmse": math.sqrt(sums["se"] / sums["n"]),
        "mse": sums["se"] / sums["n"],
        "mae": float(np.abs(err).mean()),
        "r2": float(1.0 - (err**2).sum() / max(((yv - yv.mean()) ** 2).sum(), 1e-300)),
        "max_abs_error": float(np.abs(err).max()),
    }
    info = dm.info
    symbolic = getattr(model, "symbolic_formula", None)
    if symbolic is not None and "input_names" in info:
        names = [f"s_{v}" for v in info["input_names"]]
        param = next(model.parameters())
        try:
            exprs, net = symbolic(dm.train.x.to(param), input_names=names)
        except ValueError:
            exprs = None  # not a pure KAN network (an MLP twin): no formula
        if exprs is not None:
            with torch.no_grad():
                sym_pred = net(x.to(param)).double().cpu()
            metrics["symbolic_rmse"] = float((sym_pred - y.double()).square().mean().sqrt())
            metrics["formula"] = _raw_formula(exprs, info)
    metrics.update(num_samples=n, samples_per_s=n / seconds if seconds > 0 else math.nan)
    pictures = [_plot_fit(yv, pred.numpy().ravel(), picture_dir / f"fit_{_slug(tag)}.png", tag, metrics)]
    return metrics, pictures


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def _plot_fit(y: np.ndarray, pred: np.ndarray, path: Path, tag: str, metrics: dict) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.scatter(y, pred, s=4, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{tag}: RMSE {metrics['rmse']:.3g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


# ------------------------------------------------------------------------------------------ pde
def residual_mse(model: nn.Module, problem: Any, coords: Tensor, device: torch.device) -> float:
    """Mean squared PDE residual of ``model`` at ``coords`` (autograd; chunks of 4096 points)."""
    total, count = 0.0, 0
    dtype = next(model.parameters()).dtype
    with torch.enable_grad():
        for chunk in coords.split(4096):
            c = chunk.to(device=device, dtype=dtype).requires_grad_(True)
            r = problem.residual(model(c), c, create_graph=False)
            total += float(r.detach().double().square().sum())
            count += r.numel()
    return total / max(count, 1)


def run_pde(
    model: nn.Module,
    dm: Any,
    split: str,
    *,
    device: torch.device,
    batch_size: int,
    picture_dir: Path,
    tag: str,
    progress: bool,
    max_samples: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """Relative L2 error against the exact solution (and the PDE residual) on the grid of ``split``."""
    from kanzoo.data.science import get_pde

    _check_inputs(model, dm)
    ds = _split(dm, split)
    if not hasattr(ds, "target"):
        raise ValueError(f"split {split!r} holds collocation points without a solution; use val or test")
    problem = get_pde(dm.info["pde"])
    n = len(ds) if max_samples is None else min(len(ds), int(max_samples))
    coords, exact = ds.coords[:n], ds.target[:n]
    pred, seconds = _timed_forward(model, coords, device)
    sums = pde_error_sums(pred, exact)
    metrics: dict[str, Any] = {
        "rel_l2": math.sqrt(sums["se"] / sums["ref"]),
        "mse": sums["se"] / sums["n"],
        "max_abs_error": float((pred.double() - exact.double()).abs().max()),
        "residual_mse": residual_mse(model, problem, coords, device),
        "num_samples": n,
        "samples_per_s": n / seconds if seconds > 0 else math.nan,
    }
    pictures = []
    if n == len(ds) and len(ds.shape) == 2:
        path = picture_dir / f"solution_{_slug(tag)}.png"
        _plot_solution(pred.numpy().reshape(ds.shape), exact.numpy().reshape(ds.shape), problem, path, tag)
        pictures.append(path.name)
    return metrics, pictures


def _plot_solution(pred: np.ndarray, exact: np.ndarray, problem: Any, path: Path, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    extent = [problem.lo[1], problem.hi[1], problem.lo[0], problem.hi[0]]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    panels = (("prediction", pred), ("exact", exact), ("|error|", np.abs(pred - exact)))
    for ax, (name, img) in zip(axes, panels):
        im = ax.imshow(img, origin="lower", extent=extent, aspect="auto", cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(problem.coord_names[1])
        ax.set_ylabel(problem.coord_names[0])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{tag}: {problem.name}, relative L2 {relative_l2(pred, exact):.3g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ report
def report_lines(task: str, results: Sequence[dict[str, Any]]) -> list[str]:
    """Extra Markdown for the forecasting / regression / pde reports (definitions, tables, formulas)."""
    if task == "forecasting":
        from kanzoo.eval.forecasting import forecast_report_lines

        return forecast_report_lines(results)
    if task == "regression":
        lines = [
            "Definitions: errors of the predictions in the target's units; `r2` = 1 - SSE/SST. For a pure "
            "KAN network every edge is snapped to the best library function (fitted on the training "
            "inputs, kanzoo.interpret.auto_symbolic): `formula` is that network as one expression in the "
            "original variables and `symbolic_rmse` the error of the formula itself.",
            "",
        ]
        for r in results:
            if r["metrics"].get("formula"):
                lines += [f"Formula of {r['checkpoint_name']}: `{r['metrics']['formula']}`", ""]
        return lines
    if task == "pde":
        return [
            "Definitions: `rel_l2` = ||u - u*||_2 / ||u*||_2 over the evaluation grid against the "
            "closed-form solution u*; `residual_mse` is the mean squared PDE residual there (autograd).",
            "",
        ]
    return []
