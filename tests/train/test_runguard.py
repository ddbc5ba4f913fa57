"""Run guard: the launcher watchdog and the stalled-rank heartbeat (issue 15 items 3 and 4),
exercised without DDP (the DDP versions are slow tests in test_distributed.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kanzoo.train.runguard import RunWatch, stalled_report

RUNGUARD = Path(__file__).resolve().parents[2] / "kanzoo" / "train" / "runguard.py"

# A "launcher" that starts a "worker" and then sleeps; the worker runs the watchdog. Both load
# runguard.py by path, so neither pays for importing torch.
WORKER = f"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("runguard", {str(RUNGUARD)!r})
rg = importlib.util.module_from_spec(spec); spec.loader.exec_module(rg)
rg.RunWatch(watch_parent=True).start()
print(os.getpid(), flush=True)
time.sleep(120)
"""
LAUNCHER = f"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", {WORKER!r}], stdout=sys.stdout, stderr=sys.stderr)
time.sleep(120)
"""


def test_a_worker_exits_when_its_launcher_is_killed():
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    worker = int(launcher.stdout.readline())
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 20
    gone = False
    while time.time() < deadline and not gone:
        try:
            os.kill(worker, 0)
            with open(f"/proc/{worker}/stat") as f:
                gone = f.read().split(")")[1].split()[0] == "Z"
        except (ProcessLookupError, FileNotFoundError):
            gone = True
        time.sleep(0.1)
    if not gone:
        os.kill(worker, signal.SIGKILL)
    assert gone, "the worker outlived its launcher"
    assert "the launcher of this worker" in launcher.stderr.read()


def test_the_rank_furthest_behind_is_reported_once_all_ranks_are_stuck():
    now = 1000.0
    records = {
        0: {"step": 7, "phase": "backward", "since": now - 90, "pid": 11, "host": "a"},
        1: {"step": 7, "phase": "data", "since": now - 95, "pid": 12, "host": "b"},
        2: {"step": 7, "phase": "backward", "since": now - 91, "pid": 13, "host": "a"},
    }
    ((line, rank, step, phase),) = stalled_report(records, now=now, heartbeat_s=60)
    assert rank == 1 and phase == "data"
    assert line.startswith(
        "warning: rank 1 (pid 12 on b) has been in data of step 8 for 95 s; rank(s) 0, 2 wait"
    )
    records[2]["since"] = now - 10  # someone still makes progress: nothing to report
    assert stalled_report(records, now=now, heartbeat_s=60) == []


def test_heartbeats_travel_through_a_store_and_the_report_names_the_stalled_rank():
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", 0, 2, True, timedelta(seconds=10), wait_for_workers=False)
    lines = []
    ranks = [
        RunWatch(rank=r, world_size=2, heartbeat_s=0.5, report=lines.append, store=store) for r in (0, 1)
    ]
    ranks[0].mark(4, "backward")  # waits in the gradient all-reduce
    ranks[1].mark(4, "data")  # stuck loading its batch
    for w in ranks:
        w.start()
    try:
        deadline = time.time() + 20
        while not lines and time.time() < deadline:
            time.sleep(0.1)
    finally:
        for w in ranks:
            w.stop()
    assert len(lines) == 1 and lines[0].startswith(f"warning: rank 1 (pid {os.getpid()} on ")
    assert "has been in data of step 5" in lines[0] and "rank(s) 0 wait for it" in lines[0]


@pytest.mark.parametrize("timeout", [7.5])
def test_the_process_group_timeout_is_the_trainer_setting(tmp_path, timeout):
    """A process group that already exists (made before the Trainer) gets the configured timeout."""
    from datetime import timedelta

    import torch.distributed as dist
    from toys import toy_data, toy_model

    from kanzoo.train import Trainer, TrainerConfig

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1, timeout=timedelta(seconds=1800))
    try:
        trainer = Trainer(
            model=toy_model("classification"),
            data=toy_data("classification"),
            config=TrainerConfig(
                run_dir=str(tmp_path / "r"), max_steps=1, dist_timeout_s=timeout, progress=False
            ),
        )
        trainer._make_accelerator()
        from torch.distributed.distributed_c10d import _get_default_group

        backend = _get_default_group()._get_backend(__import__("torch").device("cpu"))
        assert backend.options._timeout == timedelta(seconds=timeout)
    finally:
        dist.destroy_process_group()
