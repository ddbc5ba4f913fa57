"""A run killed with SIGKILL mid-training resumes to exactly the weights and the logged metrics of
an uninterrupted run."""

import os
import signal
import subprocess
import time

import torch
from _proc import TOY_RUN, env, python
from safetensors.torch import load_file

from kanzoo.train import read_jsonl


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
        "--log-every",
        "3",  # the killed run's last checkpoint (step 10) falls between two log steps
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

    # the metrics log has each record once, with the uninterrupted values (throughput aside)
    def records(run):
        return [
            {k: v for k, v in r.items() if not k.endswith("_per_s")}
            for r in read_jsonl(run / "metrics.jsonl")
        ]

    assert records(killed) == records(ref)
    assert [r["step"] for r in records(ref) if "loss" in r] == [3, 6, 9, 12, 15, 18, 21, 24]
    # the resumed run wrote no pickle: every file of its checkpoints is safetensors or JSON
    files = [p for p in (killed / "checkpoints").rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".safetensors", ".json") for p in files)
