"""Shared helpers of the benchmarks: machine description, interleaved timing, saved-for-backward
memory and markdown tables.

Every benchmark times its candidates interleaved (A, B, C, A, B, C, ...) in one process and
reports medians and ratios, so load from other processes on a shared machine hits all candidates
alike. ``--timer cpu`` measures the process' CPU time instead of wall time: with one thread
(``--threads 1``) that is immune to being descheduled on a busy machine, which is how the tables
of a shared development machine were taken (see benchmarks/README.md).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(*, timer: str = "wall", extra: str = "") -> str:
    """One line naming the CPU, its ISA as torch uses it, threads, torch version and load."""
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old torch
        isa = "?"
    try:
        load = "load avg " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "load avg ?"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"torch CPU capability: {isa}",
        f"threads: {torch.get_num_threads()}",
        f"torch {torch.__version__}",
        f"timer: {timer}",
        load,
        when,
    ]
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the unique storages autograd saves for backward while ``fn()`` runs.

    Storages of ``exclude`` (a module's parameters and buffers: they exist anyway) are not
    counted, so the number is the memory a training step holds *because of* the forward pass.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def module_saved_mib(module: nn.Module, x: torch.Tensor) -> float:
    """:func:`saved_bytes` of ``module(x)`` (input requiring grad), parameters excluded, in MiB."""
    xg = x.detach().clone().requires_grad_()
    tensors = [*module.parameters(), *module.buffers()]
    return saved_bytes(lambda: module(xg), exclude=tensors) / 2**20


def interleaved(
    steps: dict[str, Callable[[], object]], *, reps: int, warmup: int = 2, timer: str = "wall"
) -> dict[str, float]:
    """Median milliseconds of every step, timed interleaved (A, B, C, A, B, C, ...)."""
    clock = TIMERS[timer]
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table (floats printed with 2 decimals, ``None`` as a dash)."""

    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
