"""Resume without pickle (issue 15 item 1) and resume correctness (item 7), in-process on toys."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file
from toys import toy_data, toy_model

from kanzoo.train import CheckpointError, OptimConfig, ScheduleConfig, Trainer, TrainerConfig, read_jsonl
from kanzoo.train.loggers import JsonlLogger


class Interrupt(Exception):
    """Stands in for a kill: raised from the forward pass after a number of training calls."""


def _trainer(run_dir, *, model=None, loggers=True, **cfg):
    settings = dict(
        run_dir=str(run_dir),
        max_steps=12,
        batch_size=8,
        progress=False,
        log_every=4,
        seed=3,
        checkpoint_every=6,
    )
    settings.update(cfg)
    return Trainer(
        model=model or toy_model("lm", dropout=0.2),
        data=toy_data("lm"),
        optim=OptimConfig(lr=5e-3, weight_decay=0.1),
        schedule=ScheduleConfig(warmup_steps=2),
        config=TrainerConfig(**settings),
        loggers=[JsonlLogger(path=run_dir / "metrics.jsonl")] if loggers else [],
        name="toy_lm",
    )


def _interrupted(run_dir, after_calls, **cfg):
    model = toy_model("lm", dropout=0.2)
    forward, calls = model.forward, [0]

    def dying(*a, **k):
        calls[0] += model.training
        if calls[0] > after_calls:
            raise Interrupt
        return forward(*a, **k)

    model.forward = dying
    with pytest.raises(Interrupt):
        _trainer(run_dir, model=model, **cfg).fit()


def _comparable(records):
    return [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in records]


def test_checkpoints_hold_only_safetensors_and_json(tmp_path):
    _trainer(tmp_path, max_steps=6).fit()
    step = tmp_path / "checkpoints" / "step_00006"
    files = sorted(p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file())
    assert files and all(f.endswith((".safetensors", ".json")) for f in files), files
    assert {
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "process_0.json",
        "process_0.safetensors",
        "trainer_state.json",
    } <= set(files)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this runs open(marker, "w"): what a malicious file would do
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "optimizer.bin", "process_0.safetensors"])
def test_a_pickle_in_the_resume_dir_is_refused_and_never_loaded(tmp_path, name):
    _trainer(tmp_path, max_steps=6).fit()
    step = tmp_path / "checkpoints" / "step_00006"
    marker = tmp_path / "payload_ran"
    # also under a safetensors name: recognised by content, not only by suffix
    (step / name).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"refusing to resume from .*step_00006: it holds pickle"):
        _trainer(tmp_path, max_steps=12, resume="auto").fit()
    assert not marker.exists()


@pytest.mark.parametrize("victim", ["process_0.safetensors", "optimizer.safetensors", "model.safetensors"])
def test_a_truncated_state_file_is_an_error_not_a_silent_fresh_rng(tmp_path, victim):
    _trainer(tmp_path, max_steps=6).fit()
    path = tmp_path / "checkpoints" / "step_00006" / victim
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=rf"{victim} is corrupt or truncated"):
        _trainer(tmp_path, max_steps=12, resume="auto").fit()
    path.unlink()
    with pytest.raises(CheckpointError, match=rf"{victim} is missing"):
        _trainer(tmp_path, max_steps=12, resume="auto").fit()


def test_an_interrupted_run_resumes_to_the_same_weights_and_the_same_logged_metrics(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _trainer(ref).fit()
    # killed in step 8: the last checkpoint is step 6, between the log steps 4 and 8
    _interrupted(cut, after_calls=7)
    assert [r["step"] for r in read_jsonl(cut / "metrics.jsonl") if "loss" in r] == [4]
    _trainer(cut, resume="auto").fit()
    a, b = (
        load_file(str(ref / "final" / "model.safetensors")),
        load_file(str(cut / "final" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the log at step 8 averages steps 5-8 in both runs: the partial average was checkpointed
    assert _comparable(read_jsonl(cut / "metrics.jsonl")) == _comparable(read_jsonl(ref / "metrics.jsonl"))


def test_resuming_a_finished_run_does_nothing_and_logs_nothing_again(tmp_path, capsys):
    _trainer(tmp_path).fit()
    before = (tmp_path / "metrics.jsonl").read_text()
    summary = json.loads((tmp_path / "final" / "train_summary.json").read_text())
    capsys.readouterr()
    final = _trainer(tmp_path, resume="auto").fit()
    assert final == tmp_path / "final"
    assert "already finished 12 steps" in capsys.readouterr().out
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert json.loads((tmp_path / "final" / "train_summary.json").read_text()) == summary
    # a longer run continues from the last checkpoint
    trainer = _trainer(tmp_path, resume="auto", max_steps=18)
    trainer.fit()
    assert trainer.step == 18
    steps = [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in r]
    assert steps == [4, 8, 12, 16, 18]


def test_resume_from_a_checkpoint_of_another_size_names_the_mismatch(tmp_path):
    _trainer(tmp_path / "a", max_steps=6).fit()
    bigger = toy_model("lm", dim=24)
    with pytest.raises(CheckpointError, match=r"weights do not fit this model: .*mis-shaped"):
        _trainer(tmp_path / "b", model=bigger, resume=str(tmp_path / "a")).fit()


def test_state_files_round_trip_nested_values_exactly(tmp_path):
    from kanzoo.train.state import capture_rng, load_state, restore_rng, save_state

    obj = {
        "state": {0: {"exp_avg": torch.randn(3), "step": torch.tensor(4.0)}},
        "betas": (0.9, 0.99),
        "groups": [{"lr": 1e-3, "name": "decay", "params": [0, 1]}],
        "x": None,
        "nan": float("nan"),
    }
    save_state(tmp_path, "s", obj)
    back = load_state(tmp_path, "s")
    assert back["betas"] == (0.9, 0.99) and back["groups"] == obj["groups"] and back["x"] is None
    assert torch.equal(back["state"][0]["exp_avg"], obj["state"][0]["exp_avg"]) and back["nan"] != back["nan"]
    import random

    import numpy as np

    rng = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_state(tmp_path, "rng", rng)
    restore_rng(load_state(tmp_path, "rng"), where="test")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
