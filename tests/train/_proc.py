"""Subprocess helpers for the distributed / kill-resume / CLI tests."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOY_RUN = Path(__file__).resolve().parent / "toy_run.py"


def env() -> dict[str, str]:
    """Offline, single-threaded (the CPU is shared; DDP ranks must not oversubscribe it)."""
    e = dict(os.environ)
    e.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        KANZOO_COMPILE="0",
        PYTHONPATH=os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]),
    )
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python() -> list[str]:
    return [sys.executable]


def train_losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [r["loss"] for r in records if "loss" in r]
