"""Test RMSE against parameter count for KAN and MLP formula fits (the KAN paper's scaling comparison).

For each formula (``kanzoo.data.science.FORMULAS``, 1000 train / 1000 test samples):

* KAN ``[d, 5, 1]`` trained with grid extension, pykan style: ``--steps`` AdamW steps at each grid of
  ``--grids`` (3 -> 5 -> 10 -> 20 by default), refining the B-spline grids between stages (the edge
  functions are kept exactly) and starting a fresh optimizer per stage; the test RMSE and the
  parameter count are recorded at the end of every stage.
* MLP twins ``[d, h, 1]`` (SiLU, the ``mlp_fit`` family) for every width of ``--widths``, trained for as
  many steps as the whole KAN run.

Both use the project's Trainer with the same optimizer settings (AdamW, no weight decay, cosine
schedule per stage/run, full-batch steps), one thread, seed ``--seed``::

    python benchmarks/kan_fit_scaling.py                         # I.6.2 and I.12.11
    python benchmarks/kan_fit_scaling.py --equations kan_toy --steps 200

The table goes to stdout and benchmarks/results/kan_fit_scaling.md (+ .json). Numbers are reported
as measured, whichever side wins.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KANZOO_COMPILE", "0")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _train(model, dm, steps: int, lr: float, seed: int, run_dir: str):
    from kanzoo.train import OptimConfig, Trainer, TrainerConfig

    cfg = TrainerConfig(
        run_dir=run_dir, max_steps=steps, batch_size=len(dm.train), device="cpu", progress=False,
        num_threads=1, seed=seed, log_every=max(steps, 1),
    )  # fmt: skip
    Trainer(model=model, data=dm, config=cfg, optim=OptimConfig(lr=lr, weight_decay=0.0)).fit()


def _test_rmse(model, dm) -> float:
    with torch.no_grad():
        pred = model.eval()(dm.test.x).double()
    return math.sqrt(float((pred - dm.test.y.double()).square().mean()))


def run_equation(equation: str, *, grids, widths, steps: int, lr: float, seed: int) -> list[dict]:
    from kanzoo.data import build_data
    from kanzoo.models import count_parameters, create_model

    dm = build_data("feynman", equation=equation, seed=seed)
    d = dm.info["in_features"]
    rows = []
    torch.manual_seed(seed)
    kan = create_model("kan_fit_tiny", in_features=d, layer_kwargs={"grid_size": grids[0]})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, g in enumerate(grids):
            if i:
                kan.refine_grid(g)
            _train(kan, dm, steps, lr, seed, f"{tmp}/kan_{g}")
            rows.append(
                {
                    "equation": equation,
                    "model": f"KAN [{d}, 5, 1] G={g}",
                    "params": count_parameters(kan),
                    "test_rmse": _test_rmse(kan, dm),
                    "seconds": time.perf_counter() - t0,
                }  # fmt: skip
            )
        for w in widths:
            torch.manual_seed(seed)
            mlp = create_model("mlp_fit_tiny", in_features=d, hidden=[w])
            t0 = time.perf_counter()
            _train(mlp, dm, steps * len(grids), lr, seed, f"{tmp}/mlp_{w}")
            rows.append(
                {
                    "equation": equation,
                    "model": f"MLP [{d}, {w}, 1]",
                    "params": count_parameters(mlp),
                    "test_rmse": _test_rmse(mlp, dm),
                    "seconds": time.perf_counter() - t0,
                }  # fmt: skip
            )
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| formula | model | params | test RMSE | train s |", "|---|---|---|---|---|"]
    for r in rows:
        rmse, secs = f"{r['test_rmse']:.3e}", f"{r['seconds']:.0f}"
        cells = [r["equation"], r["model"], f"{r['params']:,}", rmse, secs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--equations", nargs="+", default=["I.6.2", "I.12.11"])
    parser.add_argument("--grids", type=int, nargs="+", default=[3, 5, 10, 20])
    parser.add_argument("--widths", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--steps", type=int, default=300, help="AdamW steps per KAN grid stage")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = []
    for eq in args.equations:
        rows += run_equation(
            eq, grids=args.grids, widths=args.widths, steps=args.steps, lr=args.lr, seed=args.seed
        )
        print(table([r for r in rows if r["equation"] == eq]), flush=True)
    text = table(rows)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "kan_fit_scaling.md").write_text(text + "\n")
        (RESULTS / "kan_fit_scaling.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
