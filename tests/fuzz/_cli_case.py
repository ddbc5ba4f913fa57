"""Shared checks for fuzz cases of kanzoo's entry points: one `error:` line, exit status 2, no
traceback, nothing left behind, a time limit per case."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class CaseTimeout(Exception):
    """A fuzz case ran past its time limit (a hang)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (SIGALRM; POSIX only)."""

    def alarm(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < seconds


def listing(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to compare before/after a case."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


def problems(code: int | None, stderr: str) -> list[str]:
    """What is wrong with a failed run's exit status and stderr (empty: a clean failure)."""
    found = []
    if code != 2:
        found.append(f"exit status {code}, expected 2")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        found.append(f"{len(lines)} stderr lines, expected 1")
    if not lines or not lines[-1].startswith("error: "):
        found.append("no `error:` line")
    if "Traceback" in stderr:
        found.append("a traceback")
    return found


def run_entry(cmd: list[str], *, cwd: Path, timeout: float, env: dict | None = None):
    """Run an entry point in a subprocess (offline, one thread)."""
    e = dict(os.environ)
    e.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        KANZOO_COMPILE="0",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]),
    )
    e.update(env or {})
    return subprocess.run(
        [sys.executable, *cmd], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


class Tally:
    """Tried/clean counts per category, printed at the end of a fuzz test (``pytest -s``)."""

    def __init__(self) -> None:
        self.tried: Counter[str] = Counter()
        self.clean: Counter[str] = Counter()
        self.failures: list[str] = []

    def record(self, category: str, case: str, issues: list[str]) -> None:
        self.tried[category] += 1
        if issues:
            self.failures.append(f"[{category}] {case}: {'; '.join(issues)}")
        else:
            self.clean[category] += 1

    def report(self) -> str:
        return ", ".join(f"{c}: {self.clean[c]}/{self.tried[c]} clean" for c in sorted(self.tried))
