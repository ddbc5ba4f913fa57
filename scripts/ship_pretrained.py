"""Copy trained runs into ``kanzoo/pretrained/<name>/`` with a model card, so they load by name.

Each entry NAME is a run made from its committed experiment config
``configs/experiment/pretrained/NAME.yaml`` by
``python train.py experiment=pretrained/NAME run_dir=<run>`` and scored by
``python evaluate.py checkpoint=<run>/final output_dir=<eval>``::

    python scripts/ship_pretrained.py \
        conv_kan-digits=runs/pretrained/conv_kan-digits:runs/pretrained_eval/conv_kan-digits ...

The card records the exact command, the data, steps, parameter count, training time and the metrics
that evaluate.py measured on the validation split.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kanzoo" / "pretrained"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiment" / "pretrained"
SKIP = {"metrics_keys": {"num_samples", "num_tokens", "num_bytes"}}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if 0 < abs(value) < 0.01 else f"{value:.4f}"  # formula/PDE errors are tiny
    return str(value)


def model_card(name: str, summary: dict, metrics: dict) -> str:
    cfg = summary["config"]
    model, data = cfg["model"]["name"], cfg["data"]
    data_args = " ".join(f"data.{k}={v}" for k, v in data.items() if k != "name")
    experiment = f"pretrained/{name}"
    if not (EXPERIMENTS / f"{name}.yaml").is_file():
        raise FileNotFoundError(f"{name}: no experiment config {EXPERIMENTS / (name + '.yaml')}")
    command = f"python train.py experiment={experiment}"
    rows = "\n".join(
        f"| {k} | {_fmt(v)} |"
        for k, v in metrics.items()
        if k not in SKIP["metrics_keys"] and not isinstance(v, (list, dict))
    )
    return f"""# {name}

`kanzoo.from_pretrained("{name}")` — a `{model}` ({summary["task"]}) trained by kanzoo's own trainer.

- Command: `{command}` (every setting, seed {cfg.get("seed", 0)} included, is pinned in
  `configs/experiment/pretrained/{name}.yaml`)
- Data: `{data["name"]}` with {data_args}
- Steps: {summary["steps"]} ({summary["samples_seen"]} samples), device {summary["device"]},
  training time {summary["train_time_s"]:.1f} s on a 2-core CPU (excluding start-up)
- Parameters: {summary["num_parameters"]:,}
- Stored in float32 safetensors.

Validation-split metrics measured by `python evaluate.py checkpoint=<run_dir>/final` on the trained run
(the same numbers as `python evaluate.py checkpoint={name}` on the shipped copy):

| metric | value |
|---|---|
{rows}

A single seed on small embedded data: a working example to load, evaluate and look inside, not a
benchmark result.
"""


def ship(name: str, run: Path, evaluation: Path) -> None:
    final = run / "final"
    summary = json.loads((final / "train_summary.json").read_text())
    metrics = json.loads((evaluation / "metrics.json").read_text())["results"][0]["metrics"]
    target = ROOT / name
    tmp = ROOT / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(final, tmp)
    (tmp / "README.md").write_text(model_card(name, summary, metrics))
    (tmp / "eval_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"shipped {name} <- {final}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("entries", nargs="+", help="NAME=RUN_DIR:EVAL_DIR")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    for entry in args.entries:
        name, _, dirs = entry.partition("=")
        run, _, evaluation = dirs.partition(":")
        if not (name and run and evaluation):
            raise SystemExit(f"expected NAME=RUN_DIR:EVAL_DIR, got {entry!r}")
        ship(name, Path(run), Path(evaluation))


if __name__ == "__main__":
    main()
