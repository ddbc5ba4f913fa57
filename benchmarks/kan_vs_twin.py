"""KAN model vs its parameter-matched MLP/CNN twin, several seeds, one table.

Each (model, seed) is trained by the project's own ``train.py`` with the model's default recipe and
data, in its own process; the table reports mean ± std of the task's final validation metric over
the seeds, the parameter count and the training throughput (samples/s, from train_summary.json)::

    python benchmarks/kan_vs_twin.py                      # 4 pairs x 3 seeds, runs/kan_vs_twin/
    python benchmarks/kan_vs_twin.py --seeds 0 1 --pairs conv_kan
    python benchmarks/kan_vs_twin.py --report-only        # re-print the table from finished runs

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
# KAN model -> parameter-matched twin (hidden/base width searched so params are within 5%).
PAIRS = {
    "kan_gpt": "gpt_nano_matched",
    "conv_kan": "cnn_tiny_matched",
    "kan_vit": "vit_tiny_matched",
    "kan_unet": "unet_tiny_matched",
}
# The metric reported per task, and whether higher is better.
METRIC = {"lm": ("val_loss", False), "classification": ("val_acc", True), "segmentation": ("val_iou", True)}


def run(model: str, seed: int, root: Path) -> Path:
    run_dir = root / f"{model}_seed{seed}"
    if (run_dir / "final" / "train_summary.json").is_file():
        return run_dir
    cmd = [
        sys.executable,
        "train.py",
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
        "speed": statistics.mean(speeds),
    }


def table(seeds: list[int], root: Path, pairs: list[str]) -> str:
    lines = [
        "| task | model | params | metric | mean ± std | seeds | train samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kan in pairs:
        for model in (kan, PAIRS[kan]):
            s = summarize(model, seeds, root)
            if s is None:
                lines.append(f"| | {model} | | | not run | 0 | |")
                continue
            name, higher = METRIC[s["task"]]
            arrow = "↑" if higher else "↓"
            lines.append(
                f"| {s['task']} | {model} | {s['params']:,} | {name} {arrow} | "
                f"{s['mean']:.4f} ± {s['std']:.4f} | {s['n']} | {s['speed']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "kan_vs_twin")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        for seed in args.seeds:
            for kan in args.pairs:
                for model in (kan, PAIRS[kan]):
                    run(model, seed, args.root)
    print(table(args.seeds, args.root, args.pairs))


if __name__ == "__main__":
    main()
