"""Trainer behaviour on toy models (in-process, CPU, seconds)."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from toys import ToyClassifier, toy_data, toy_model

from kanzoo.layers import KANLinear
from kanzoo.train import (
    JsonlLogger,
    NonFiniteLossError,
    OptimConfig,
    ScheduleConfig,
    Trainer,
    TrainerConfig,
    read_jsonl,
    resolve_mixed_precision,
)
from kanzoo.train.loggers import _default_wandb_mode


def _fit(tmp_path, task="classification", model=None, data=None, loggers=None, **cfg):
    settings = dict(run_dir=str(tmp_path), max_steps=30, batch_size=8, progress=False, log_every=5)
    settings.update(cfg)
    trainer = Trainer(
        model=model or toy_model(task),
        data=data or toy_data(task),
        optim=OptimConfig(lr=1e-2),
        schedule=ScheduleConfig(warmup_steps=2),
        config=TrainerConfig(**settings),
        loggers=loggers,
        name=f"toy_{task}",
    )
    return trainer, trainer.fit()


def test_fit_trains_and_writes_run_artifacts(tmp_path, capsys):
    trainer, final = _fit(
        tmp_path, eval_every=10, loggers=[JsonlLogger(path=tmp_path / "metrics.jsonl")], save_best=True
    )
    assert final == tmp_path / "final"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Final checkpoint: {final}"
    assert {"model.safetensors", "config.json", "train_summary.json"} <= {p.name for p in final.iterdir()}
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["task"] == "classification" and summary["steps"] == 30
    assert summary["final_metrics"]["val_acc"] > 0.8
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "best" / "model.safetensors").is_file()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["step"] for r in records if "val_acc" in r] == [10, 20, 30]
    # the saved weights are the trained ones
    weights = load_file(str(final / "model.safetensors"))
    for name, p in trainer.model.state_dict().items():
        torch.testing.assert_close(weights[name], p)


def test_grad_accumulation_equals_the_large_batch(tmp_path):
    _fit(tmp_path / "a", batch_size=8, grad_accum_steps=1, max_steps=8)
    _fit(tmp_path / "b", batch_size=4, grad_accum_steps=2, max_steps=8)
    a = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


class NaNAfter(ToyClassifier):
    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.limit = 0, calls

    def forward(self, pixel_values):
        self.calls += self.training
        out = super().forward(pixel_values)
        return out * float("nan") if self.calls > self.limit else out


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = NaNAfter(calls=7)
    with pytest.raises(
        NonFiniteLossError, match=r"became nan at step 8 .*last good checkpoint: .*step_00005"
    ):
        _fit(tmp_path, model=model, checkpoint_every=5, max_steps=20)
    assert (tmp_path / "checkpoints" / "step_00005" / "trainer_state.json").is_file()
    assert not (tmp_path / "final").exists()
    # the weights of the last good step are finite (the bad update was not applied)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_existing_run_dir_is_not_overwritten_and_resume_auto_without_state_starts_fresh(tmp_path):
    _fit(tmp_path / "run", max_steps=3)
    with pytest.raises(ValueError, match="already holds a run.*trainer.resume=auto"):
        _fit(tmp_path / "run", max_steps=3)
    trainer, _ = _fit(tmp_path / "fresh", max_steps=3, resume="auto")
    assert trainer.step == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _fit(tmp_path / "other", max_steps=3, resume=str(tmp_path / "nowhere"))


def test_checkpoints_are_pruned_and_resume_continues_to_more_steps(tmp_path):
    _fit(tmp_path, max_steps=12, checkpoint_every=3, keep_checkpoints=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00009", "step_00012"]
    state = json.loads((tmp_path / "checkpoints" / "step_00012" / "trainer_state.json").read_text())
    # 12 steps x 8 samples = the whole 96-sample epoch (the next epoch starts at the next fetch)
    assert (state["step"], state["epoch"], state["epoch_samples"]) == (12, 0, 96)
    assert (tmp_path / "checkpoints" / "step_00012" / "model" / "model.safetensors").is_file()
    trainer, _ = _fit(tmp_path, max_steps=15, checkpoint_every=3, resume="auto")
    assert trainer.step == 15 and trainer.samples_seen == 15 * 8


class KANNet(torch.nn.Module):
    def __init__(self, basis="bspline"):
        super().__init__()
        self.kan = KANLinear(16, 3, basis=basis)

    def forward(self, pixel_values):
        return self.kan(pixel_values.flatten(1) * 4.0)  # inputs well beyond the initial [-1, 1] grid

    def save_pretrained(self, directory):
        from pathlib import Path

        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, f"{directory}/model.safetensors")


def test_grid_updates_move_bspline_knots_onto_the_data_and_skip_other_bases(tmp_path):
    model = KANNet()
    k, g = model.kan.basis.spline_order, model.kan.basis.grid_size
    _fit(tmp_path / "b", model=model, max_steps=6, grid_update_every=2, grid_update_until=4)
    data = (
        torch.stack([toy_data("classification").train[i]["pixel_values"] for i in range(96)]).flatten(1) * 4
    )
    lo, hi = model.kan.basis.grid[:, k], model.kan.basis.grid[:, k + g]
    # the knots were placed on training batches: inside the data range, far beyond [-1, 1]
    assert (lo >= data.min(0).values - 1e-5).all() and (hi <= data.max(0).values + 1e-5).all()
    assert (hi - lo).mean() > 4.0
    rbf = KANNet(basis="rbf")
    centers = rbf.kan.basis.grid.clone()
    _fit(tmp_path / "r", model=rbf, max_steps=4, grid_update_every=2)
    torch.testing.assert_close(rbf.kan.basis.grid, centers)  # no B-spline layers: nothing updated


def test_lm_run_saves_the_tokenizer_with_the_model(tmp_path):
    saved = []

    class Tok:
        def save_pretrained(self, directory):
            saved.append(directory)
            (tmp_path / "marker").write_text(directory)

    data = toy_data("lm")
    data.info["tokenizer"] = Tok()
    _fit(tmp_path / "run", task="lm", data=data, max_steps=3)
    assert saved and saved[0].endswith(".tmp-final")  # written inside the staging dir, then renamed
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_mixed_precision_resolution_and_bf16_on_cpu(tmp_path):
    assert resolve_mixed_precision("auto", cpu=True) == "no"
    assert resolve_mixed_precision("fp16", cpu=False) == "fp16"
    trainer, _ = _fit(tmp_path, max_steps=4, mixed_precision="bf16", device="cpu")
    assert trainer.acc.mixed_precision == "bf16"
    assert all(r["loss"] == r["loss"] for r in trainer.history if "loss" in r)


def test_bad_trainer_settings_name_the_key():
    with pytest.raises(ValueError, match="trainer.batch_size must be an integer >= 1, got 0"):
        TrainerConfig(batch_size=0)
    with pytest.raises(
        ValueError, match=r"unknown trainer setting\(s\): 'max_step' \(did you mean 'max_steps'\?\)"
    ):
        TrainerConfig.from_dict({"max_step": 3})


def test_jsonl_start_rewinds_to_the_checkpoint_history_and_refuses_other_runs_metrics(tmp_path):
    log = JsonlLogger(path=tmp_path / "sub" / "m.jsonl")
    log.start([], new=True)
    assert not (tmp_path / "sub").exists()  # nothing is created before the first record
    for step in range(1, 6):
        log.log({"loss": float(step)}, step=step)
    log.finish()
    with open(tmp_path / "sub" / "m.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a line cut by a kill
    log.start([{"step": 1, "loss": 1.0}, {"step": 3, "val_loss": float("nan")}], new=False)
    assert read_jsonl(tmp_path / "sub" / "m.jsonl") == [
        {"step": 1, "loss": 1.0},
        {"step": 3, "val_loss": "nan"},
    ]
    with pytest.raises(FileExistsError, match="already holds metrics of another run"):
        JsonlLogger(path=tmp_path / "sub" / "m.jsonl").start([], new=True)


def test_wandb_mode_is_offline_unless_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _default_wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert _default_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert _default_wandb_mode() == "disabled"


def test_eval_is_exact_over_the_whole_validation_set(tmp_path):
    trainer, _ = _fit(tmp_path, max_steps=2, eval_batch_size=7)
    model = trainer.acc.unwrap_model(trainer.model).eval()
    val = toy_data("classification").val
    x = torch.stack([val[i]["pixel_values"] for i in range(len(val))])
    y = torch.stack([val[i]["labels"] for i in range(len(val))])
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    final_eval = [r for r in trainer.history if "val_acc" in r][-1]
    assert final_eval["step"] == 2 and final_eval["val_acc"] == pytest.approx(acc)


def test_data_module_namespace_is_enough():
    data = SimpleNamespace(task="classification", train=[], val=None, collate_fn=None, info={})
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(
            model=ToyClassifier(), data=data, config=TrainerConfig(run_dir="/tmp/x", progress=False)
        ).fit()


@pytest.mark.slow  # wandb starts its service process: ~10-40 s here
def test_wandb_logger_runs_offline_without_a_key(monkeypatch, tmp_path):
    from kanzoo.train import WandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    logger = WandbLogger(run_dir=str(tmp_path / "run"))
    assert logger.mode == "offline"
    logger.log_config({"lr": 1e-3})
    logger.log({"loss": 1.5}, step=1)
    logger.finish()
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


class Configured(ToyClassifier):
    """A toy whose config (like a kanzoo model's) is saved next to its weights."""

    def __init__(self, hidden: int = 32, act: str = "gelu"):
        super().__init__(hidden=hidden)
        self.config = SimpleNamespace(to_dict=lambda: {"hidden": hidden, "act": act, "kanzoo_version": "x"})

    def save_pretrained(self, directory):
        from pathlib import Path

        super().save_pretrained(directory)
        Path(directory, "config.json").write_text(json.dumps(self.config.to_dict()))


def test_resume_refuses_a_model_built_differently_from_the_checkpoint(tmp_path):
    _fit(tmp_path, model=Configured(act="gelu"), max_steps=4, checkpoint_every=2)
    # same tensor shapes, so the weights would load silently: the saved config must catch it
    with pytest.raises(
        ValueError, match=r"differs from the checkpoint's in act \(checkpoint 'gelu', now 'relu'\)"
    ):
        _fit(tmp_path, model=Configured(act="relu"), max_steps=6, checkpoint_every=2, resume="auto")
    trainer, _ = _fit(tmp_path, model=Configured(act="gelu"), max_steps=6, checkpoint_every=2, resume="auto")
    assert trainer.step == 6


def _fused_adamw(monkeypatch):
    """AdamW with the fused kernel on the CPU: the optimizer a GPU run gets (it can skip an update
    on the device through ``found_inf``)."""
    import kanzoo.train.trainer as tr

    real = tr.build_optimizer

    def build(model, config):
        groups = [
            {k: g[k] for k in ("params", "lr", "weight_decay", "name") if k in g}
            for g in real(model, config).param_groups
        ]
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=True)

    monkeypatch.setattr(tr, "build_optimizer", build)


def test_an_optimizer_step_never_waits_for_the_host_only_log_steps_do(tmp_path, monkeypatch):
    import sys

    _fused_adamw(monkeypatch)
    trainer = Trainer(
        model=toy_model("classification"),
        data=toy_data("classification"),
        optim=OptimConfig(lr=1e-2),
        config=TrainerConfig(run_dir=str(tmp_path), max_steps=10, batch_size=8, progress=False, log_every=5),
        name="toy",
    )
    trainer.defer_nonfinite = True  # as on a GPU with the fused optimizer
    syncs = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _original=original, _name=name, **k):
            frame, origin = sys._getframe(1), None
            while frame is not None and origin is None:  # the first kanzoo frame that asked
                if "/kanzoo/" in frame.f_code.co_filename:
                    origin = frame.f_code.co_filename.rsplit("/kanzoo/", 1)[1]
                frame = frame.f_back
            syncs.append((trainer.watch.phase, _name, origin))
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    trainer.fit()
    monkeypatch.undo()
    in_steps = [s for s in syncs if s[0] in ("data", "forward", "backward", "optimizer")]
    # the task's own loss code (tasks.py) is not the trainer's to judge; the sampler draws an
    # epoch's order on the CPU by design (no device involved)
    assert [s for s in in_steps if s[2] not in ("train/tasks.py", "train/sampler.py")] == []
    assert any(s[0] == "log" for s in syncs)  # the loss is read at log steps
    assert [r["step"] for r in trainer.history if "loss" in r] == [5, 10]


def test_deferred_nonfinite_check_skips_the_bad_update_on_the_device(tmp_path, monkeypatch):
    _fused_adamw(monkeypatch)
    model = NaNAfter(calls=7)
    trainer = Trainer(
        model=model,
        data=toy_data("classification"),
        optim=OptimConfig(lr=1e-2),
        config=TrainerConfig(run_dir=str(tmp_path), max_steps=20, batch_size=8, progress=False, log_every=5),
        name="toy",
    )
    trainer.defer_nonfinite = True
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 8 .*skipped on the device .*step 10"):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_loss_made_nan_by_an_infinite_learning_rate_names_the_learning_rate(tmp_path, monkeypatch):
    import kanzoo.train.trainer as tr

    def schedule(optimizer, *, total_steps, schedule):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: math.inf if step >= 2 else 1.0)

    monkeypatch.setattr(tr, "build_scheduler", schedule)
    with pytest.raises(
        NonFiniteLossError, match=r"became nan at step \d+ .*cause: the learning rate is \[inf"
    ):
        _fit(tmp_path, max_steps=10)


def test_compile_true_trains_the_whole_model_compiled(tmp_path):
    from torch._dynamo.eval_frame import OptimizedModule

    eager, _ = _fit(tmp_path / "eager", max_steps=4, log_every=1)
    torch._dynamo.reset()
    compiled, _ = _fit(tmp_path / "compiled", max_steps=4, log_every=1, compile=True)
    assert isinstance(compiled._train_model, OptimizedModule)
    assert compiled._train_model._orig_mod is compiled.model
    a = [r["loss"] for r in eager.history if "loss" in r]
    b = [r["loss"] for r in compiled.history if "loss" in r]
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    wa = load_file(str(tmp_path / "eager" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "compiled" / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()  # no "_orig_mod." prefixes in a compiled run's checkpoint
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TrainerConfig(clip_grad_norm=-1), "trainer.clip_grad_norm must be a number >= 0"),
        (
            lambda: TrainerConfig(eval_max_batches=0),
            "trainer.eval_max_batches must be an integer >= 1 or null",
        ),
        (lambda: OptimConfig(weight_decay=-1), "optim.weight_decay must be a finite number >= 0"),
        (lambda: TrainerConfig(max_steps=1.5), "trainer.max_steps must be an integer >= 1, got 1.5"),
        (lambda: TrainerConfig(eval_batch_size=0), "trainer.eval_batch_size must be an integer >= 1"),
        (lambda: TrainerConfig(progress="maybe"), "trainer.progress must be true or false, got 'maybe'"),
        (
            lambda: ScheduleConfig(warmup_ratio=1.0),
            r"optim.schedule.warmup_ratio must be a finite number in \[0, 1\)",
        ),
        (lambda: OptimConfig(betas=[0.9]), r"optim.betas must be two numbers in \[0, 1\)"),
    ],
)
def test_settings_that_would_train_silently_wrong_are_refused_naming_them(build, message):
    with pytest.raises(ValueError, match=message):
        build()
