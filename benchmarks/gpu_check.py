"""One GPU readiness check on a CUDA machine, printed as ONE table (a few minutes).

    python benchmarks/gpu_check.py                    # everything
    python benchmarks/gpu_check.py --skip-train --steps 10 --families kan_vit conv_kan

It runs, each in its own subprocess:

1. the ``gpu``-marked tests (``pytest -m gpu``: Triton/CUDA layers against float64 CPU references);
2. ``benchmarks/layers.py --only linear --quick --device cuda`` in fp32 and in bf16 (the table
   rows: KAN layer fwd+bwd time / parameter-matched MLP's);
3. a short ``train.py model=<family> trainer=gpu trainer.max_steps=N`` for every family,
   reporting success and the run's throughput from ``train_summary.json``.

Without a CUDA device it prints one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("conv_kan", "kan_vit", "kan_unet", "kan_gpt")
NO_CUDA = "no CUDA device found (torch.cuda.is_available() is False): benchmarks/gpu_check.py needs a GPU"


@dataclass
class Result:
    """One row of the final table."""

    check: str
    setting: str
    ok: bool
    detail: str
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of each train.py run")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-layers", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per subprocess")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    return args


def _run(cmd: list[str], timeout: float, cwd: Path = REPO) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "WANDB_MODE": "disabled"}  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, out = 124, f"timed out after {timeout:.0f} s " + str(err.stdout or "")[-2000:]
    return code, out, time.perf_counter() - t0


def pytest_summary(output: str) -> str:
    """The last ``N passed, M failed ...`` line of a pytest run (or its last line)."""
    lines = [ln.strip("= ") for ln in output.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.search(r"\d+ (passed|failed|skipped|error)", line):
            return line
    return lines[-1] if lines else "no output"


def layer_ratios(output: str) -> list[tuple[str, str, str]]:
    """``(shape, layer, f+b / ref)`` of every data row of the layer benchmark's markdown table."""
    rows = []
    header = None
    for line in output.splitlines():
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= {"-"}:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "f+b / ref" in cells:
            header = cells
            continue
        if header is not None and len(cells) == len(header):
            rows.append(
                (cells[header.index("shape")], cells[header.index("layer")], cells[header.index("f+b / ref")])
            )
    return rows


def train_detail(run_dir: Path) -> str:
    """Throughput line from a finished run's ``train_summary.json`` (or why there is none)."""
    found = sorted(run_dir.rglob("train_summary.json"))
    if not found:
        return "no train_summary.json"
    summary = json.loads(found[-1].read_text())
    keys = [k for k in summary if "per_s" in k or "throughput" in k]
    parts = [f"{k}={summary[k]:.1f}" for k in keys if isinstance(summary[k], (int, float))]
    if isinstance(summary.get("final_train_loss"), (int, float)):
        parts.append(f"loss={summary['final_train_loss']:.3f}")
    return ", ".join(parts) or "finished"


def markdown(results: list[Result]) -> str:
    lines = ["| check | setting | ok | result | s |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.check} | {r.setting} | {'yes' if r.ok else 'NO'} | {r.detail} | {r.seconds:.0f} |"
        )
    return "\n".join(lines)


def run_checks(args: argparse.Namespace) -> list[Result]:
    py = sys.executable
    results: list[Result] = []
    if not args.skip_tests:
        code, out, s = _run(
            [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"], args.timeout
        )
        results.append(Result("pytest -m gpu", "tests/", code == 0, pytest_summary(out), s))
    if not args.skip_layers:
        for dtype in ("fp32", "bf16"):
            cmd = [
                py,
                "benchmarks/layers.py",
                "--only",
                "linear",
                "--quick",
                "--device",
                "cuda",
                "--dtype",
                dtype,
            ]
            code, out, s = _run(cmd, args.timeout)
            rows = layer_ratios(out)
            detail = "; ".join(f"{shape} {layer} {r}x" for shape, layer, r in rows) or out.strip()[-300:]
            results.append(Result("layers.py (f+b / MLP)", dtype, code == 0 and bool(rows), detail, s))
    if not args.skip_train:
        for family in args.families:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [py, "train.py", f"model={family}", "trainer=gpu", f"trainer.max_steps={args.steps}",
                       "trainer.eval_every=0", f"run_dir={tmp}/run", f"hydra.run.dir={tmp}/run"]  # fmt: skip
                code, out, s = _run(cmd, args.timeout)
                detail = (
                    train_detail(Path(tmp)) if code == 0 else " ".join(out.strip().splitlines()[-2:])[-300:]
                )
            results.append(
                Result("train.py trainer=gpu", f"{family}, {args.steps} steps", code == 0, detail, s)
            )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from kanzoo._cli import UserInputError

    if not torch.cuda.is_available():
        raise UserInputError(NO_CUDA)
    print(
        f"GPU: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | CUDA {torch.version.cuda}",
        flush=True,
    )
    results = run_checks(args)
    print(markdown(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from kanzoo._cli import run_main

    sys.exit(run_main(main))
