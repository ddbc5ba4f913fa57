"""KAN model vs its parameter-matched MLP/CNN twin, several seeds, one table.

Each task has a committed experiment config, ``configs/experiment/kan_vs_twin/<task>.yaml``, that pins
the data, recipe, optimizer and the (KAN, twin) pair. Every (model, seed) is trained by the project's
own ``train.py experiment=kan_vs_twin/<task> model=<m> seed=<s>`` in its own process (finished runs
are skipped, so an interrupted table resumes); the same runs are ``python train.py -m
experiment=kan_vs_twin/<task>``. The table reports mean ± std of the task's final validation metric
over the seeds, the parameter count, the training throughput (median samples/s over the seeds, from
train_summary.json; the median shrugs off a run slowed by a busy machine or a first compile)
and the KAN/twin time per sample::

    python benchmarks/kan_vs_twin.py                      # 7 tasks x 2 models x 3 seeds, runs/kan_vs_twin/
    python benchmarks/kan_vs_twin.py --seeds 0 1 --tasks conv
    python benchmarks/kan_vs_twin.py --report-only        # re-print the table from finished runs

The table is also written to benchmarks/results/kan_vs_twin.md and .json.

Numbers are reported as measured, whichever side wins.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "configs" / "experiment" / "kan_vs_twin"
RESULTS = REPO / "benchmarks" / "results"


def load_pairs() -> dict[str, tuple[str, str]]:
    """task -> (KAN model, matched twin), read from each experiment config's sweep."""
    import yaml

    pairs = {}
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        models = yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"]["model"].split(",")
        if len(models) != 2:
            raise ValueError(f"{path} must sweep exactly two models (KAN, twin), got {models}")
        pairs[path.stem] = (models[0].strip(), models[1].strip())
    return pairs


PAIRS = load_pairs()
# The metric reported per task, and whether higher is better.
METRIC = {
    "lm": ("val_loss", False),
    "classification": ("val_acc", True),
    "segmentation": ("val_iou", True),
    "forecasting": ("val_mase", False),
    "regression": ("val_rmse", False),
    "pde": ("val_rel_l2", False),
}


def run(task: str, model: str, seed: int, root: Path) -> Path:
    run_dir = root / f"{model}_seed{seed}"
    if (run_dir / "final" / "train_summary.json").is_file():
        return run_dir
    cmd = [
        sys.executable,
        "train.py",
        f"experiment=kan_vs_twin/{task}",
        f"model={model}",
        f"seed={seed}",
        f"run_dir={run_dir}",
        "trainer.progress=false",
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return run_dir


def summarize(model: str, seeds: list[int], root: Path) -> dict | None:
    values, speeds, params, task = [], [], None, None
    for seed in seeds:
        path = root / f"{model}_seed{seed}" / "final" / "train_summary.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        task = summary["task"]
        values.append(summary["final_metrics"][METRIC[task][0]])
        speeds.append(summary["samples_seen"] / summary["train_time_s"])
        params = summary["num_parameters"]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {
        "task": task,
        "mean": statistics.mean(values),
        "std": std,
        "n": len(values),
        "params": params,
        "speed": statistics.median(speeds),
    }


def table(seeds: list[int], root: Path, pairs: list[str]) -> str:
    lines = [
        "| experiment | model | params | metric | mean ± std | seeds | samples/s | time vs twin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in pairs:
        kan, twin = PAIRS[task]
        stats = {m: summarize(m, seeds, root) for m in (kan, twin)}
        for model, s in stats.items():
            if s is None:
                lines.append(f"| kan_vs_twin/{task} | {model} | | | not run | 0 | | |")
                continue
            name, higher = METRIC[s["task"]]
            arrow = "↑" if higher else "↓"
            other = stats[twin]
            ratio = f"{other['speed'] / s['speed']:.2f}×" if other is not None else ""
            fmt = "{:.3e}" if abs(s["mean"]) < 0.01 else "{:.4f}"  # PDE / formula-fit errors are tiny
            lines.append(
                f"| kan_vs_twin/{task} | {model} | {s['params']:,} | {name} {arrow} | "
                f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])} | {s['n']} | {s['speed']:.0f} | {ratio} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "kan_vs_twin")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        for seed in args.seeds:
            for task in args.tasks:
                for model in PAIRS[task]:
                    run(task, model, seed, args.root)
    text = table(args.seeds, args.root, args.tasks)
    print(text)
    if not args.report_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "kan_vs_twin.md").write_text(text + "\n")
        summary = {m: summarize(m, args.seeds, args.root) for t in args.tasks for m in PAIRS[t]}
        (RESULTS / "kan_vs_twin.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
