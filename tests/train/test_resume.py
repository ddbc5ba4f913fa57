"""A run killed with SIGKILL mid-training resumes to exactly the weights of an uninterrupted run."""

import os
import signal
import subprocess
import time

import pytest
import torch
from _proc import TOY_RUN, env, python, train_losses
from safetensors.torch import load_file


def _cmd(run_dir, *extra):
    # dropout makes the result depend on the restored RNG state, not only on weights and data order
    return [
        *python(),
        str(TOY_RUN),
        "--task",
        "lm",
        "--run-dir",
        str(run_dir),
        "--steps",
        "24",
        "--checkpoint-every",
        "5",
        "--dropout",
        "0.2",
        *extra,
    ]


def test_sigkill_then_resume_auto_reaches_the_uninterrupted_weights(tmp_path):
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    reference = subprocess.Popen(
        _cmd(ref), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    victim = subprocess.Popen(
        _cmd(killed, "--sleep", "0.15"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while not (killed / "checkpoints" / "step_00010").exists():
        assert victim.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "final").exists()
    out = reference.communicate(timeout=240)[0]
    assert reference.returncode == 0, out[-3000:]

    resumed = subprocess.run(
        _cmd(killed, "--resume", "auto"), env=env(), capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert resumed.stdout.strip().splitlines()[-1] == f"Final checkpoint: {killed / 'final'}"
    a = load_file(str(killed / "final" / "model.safetensors"))
    b = load_file(str(ref / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the metrics log has each step once, with the uninterrupted values
    assert train_losses(killed) == pytest.approx(train_losses(ref), rel=0, abs=0)
