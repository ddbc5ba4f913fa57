"""DDP: two gloo processes on the CPU follow the single-process loss trajectory."""

import json
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
