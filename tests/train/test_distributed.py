"""DDP: two gloo processes on the CPU follow the single-process loss trajectory."""

import json
import re
import subprocess

import pytest
import torch
from _proc import TOY_RUN, env, free_port, python, train_losses
from safetensors.torch import load_file


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    common = ["--task", "classification", "--steps", "12", "--device", "cpu"]
    ddp = [
        *python(),
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(TOY_RUN),
        "--run-dir",
        str(tmp_path / "ddp"),
        "--batch-size",
        "4",
        *common,
    ]
    single = [*python(), str(TOY_RUN), "--run-dir", str(tmp_path / "one"), "--batch-size", "8", *common]
    # both runs at once: one core each
    procs = [
        subprocess.Popen(c, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in (ddp, single)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    # really two processes (`--cpu --num_processes 2` would silently run one)
    assert json.loads((tmp_path / "ddp" / "world.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "one" / "world.json").read_text())["world_size"] == 1
    a, b = train_losses(tmp_path / "ddp"), train_losses(tmp_path / "one")
    assert len(a) == len(b) == 12
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert b[-1] < b[0]
    wa = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def _launch(tmp_path, run, *extra, steps="12"):
    return [
        *python(),
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(TOY_RUN),
        "--run-dir",
        str(tmp_path / run),
        "--device",
        "cpu",
        "--steps",
        steps,
        *extra,
    ]


@pytest.mark.slow  # two DDP launches of ~30 s each on a busy 2-core machine
def test_a_stalled_rank_is_reported_and_the_timeout_ends_the_run(tmp_path):
    import time

    cmd = _launch(
        tmp_path,
        "stall",
        "--task",
        "lm",
        "--stall-rank",
        "1",
        "--stall-at",
        "3",
        "--stall-s",
        "900",
        "--dist-timeout",
        "25",
        "--heartbeat",
        "5",
    )
    start = time.time()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=400)
    elapsed = time.time() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert elapsed < 300, elapsed  # not torch's default 30 minutes
    assert re.search(r"warning: rank 1 \(pid \d+ on \S+\) has been in forward of step 3 for \d+ s", out), out[
        -3000:
    ]
    assert "rank(s) 0 wait for it" in out
    assert re.search(r"error: .*timed out after trainer.dist_timeout_s=25", out), out[-3000:]


@pytest.mark.slow
def test_killing_the_launcher_stops_its_workers(tmp_path):
    import os
    import signal
    import time

    pids = tmp_path / "pids"
    cmd = _launch(tmp_path, "orphan", "--task", "lm", "--sleep", "0.2", "--pid-dir", str(pids), steps="2000")
    launcher = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(list(pids.glob("*.pid"))) < 2:
        assert launcher.poll() is None and time.time() < deadline, "workers never started"
        time.sleep(0.2)
    workers = [int(p.read_text()) for p in pids.glob("*.pid")]
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for init is not training
            return f.read().split(")")[1].split()[0] != "Z"

    deadline = time.time() + 30
    while any(alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} kept running after their launcher died"
