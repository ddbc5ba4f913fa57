"""Role-based parameter groups, AdamW decay behaviour and the warmup + cosine schedule."""

import math

import pytest
import torch
from torch import nn

from kanzoo.layers import KANLinear
from kanzoo.train import OptimConfig, ScheduleConfig, build_optimizer, build_scheduler, classify_parameters
from kanzoo.train.optim import lr_factor, param_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.norm = nn.LayerNorm(6)
        self.kan = KANLinear(6, 5)
        self.rational = KANLinear(5, 4, basis="rational", base_activation=None)
        self.head = nn.Linear(4, 10)
        self.gain = nn.Parameter(torch.ones(4))

    def forward(self, ids):
        return self.head(self.rational(self.kan(self.norm(self.embed(ids)))) * self.gain)


def _names(net, groups):
    names = {id(p): n for n, p in net.named_parameters()}
    return {g["name"]: sorted(names[id(p)] for p in g["params"]) for g in groups}


def test_classify_parameters_by_role_puts_every_parameter_in_exactly_one_group():
    net = Net()
    groups = classify_parameters(net)
    flat = [n for names in groups.values() for n in names]
    assert sorted(flat) == sorted(n for n, _ in net.named_parameters())
    assert set(groups) == {"decay", "no_decay"}  # by default KAN parameters join the twin's groups
    # Weight matrices, KAN and non-KAN alike.
    decayed = {"kan.base_weight", "kan.spline_weight", "rational.spline_weight", "head.weight"}
    assert set(groups["decay"]) == decayed
    # Embeddings, norms, biases, gains (incl. the spline scaler) and basis coefficients.
    assert set(groups["no_decay"]) == {
        "embed.weight", "norm.weight", "norm.bias", "kan.bias", "kan.spline_scaler", "rational.bias", "gain",
        "rational.spline_scaler", "rational.basis.numerator", "rational.basis.denominator", "head.bias",
    }  # fmt: skip


def test_tied_weights_are_counted_once():
    net = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7, bias=False))
    net[1].weight = net[0].weight
    groups = classify_parameters(net)
    assert sum(len(v) for v in groups.values()) == 1


def test_default_recipe_gives_kan_and_plain_weights_the_same_settings():
    cfg = OptimConfig(lr=1e-3, weight_decay=0.1)
    assert cfg.kan_weight_decay is None and cfg.kan_lr_mult == 1.0
    groups = {g["name"]: g for g in param_groups(Net(), cfg)}
    assert set(groups) == {"decay", "no_decay"}
    assert groups["decay"]["weight_decay"] == 0.1 and groups["decay"]["lr"] == 1e-3
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["no_decay"]["lr"] == 1e-3


def test_kan_options_are_explicit_exceptions_in_their_own_groups():
    net = Net()
    cfg = OptimConfig(lr=1e-3, weight_decay=0.1, kan_lr_mult=3.0, kan_weight_decay=0.02)
    groups = {g["name"]: g for g in param_groups(net, cfg)}
    names = _names(net, param_groups(net, cfg))
    assert names["decay"] == ["head.weight"]
    assert names["kan_decay"] == ["kan.base_weight", "kan.spline_weight", "rational.spline_weight"]
    assert groups["kan_decay"]["weight_decay"] == 0.02 and groups["kan_decay"]["lr"] == pytest.approx(3e-3)
    assert set(names["kan_no_decay"]) == {
        "kan.bias", "kan.spline_scaler", "rational.bias", "rational.spline_scaler",
        "rational.basis.numerator", "rational.basis.denominator",
    }  # fmt: skip
    kan_no_decay = groups["kan_no_decay"]
    assert kan_no_decay["weight_decay"] == 0.0 and kan_no_decay["lr"] == pytest.approx(3e-3)
    assert groups["decay"]["lr"] == 1e-3 and groups["decay"]["weight_decay"] == 0.1
    # kan_weight_decay alone splits only the KAN weights off; 0 keeps the spline coefficients whole.
    only_wd = _names(net, param_groups(net, OptimConfig(kan_weight_decay=0.0)))
    assert set(only_wd) == {"decay", "no_decay", "kan_decay"}
    assert only_wd["kan_decay"] == ["kan.base_weight", "kan.spline_weight", "rational.spline_weight"]
    # The option equal to weight_decay changes nothing.
    assert set(_names(net, param_groups(net, OptimConfig(weight_decay=0.05, kan_weight_decay=0.05)))) == {
        "decay",
        "no_decay",
    }
    with_emb = _names(net, param_groups(net, OptimConfig(decay_embeddings=True)))
    assert "embed.weight" in with_emb["decay"] and "embed.weight" not in with_emb["no_decay"]


def test_adamw_decays_only_the_decay_group():
    """With zero gradients AdamW's update is pure decoupled decay: p <- p * (1 - lr * wd)."""
    net = Net()
    cfg = OptimConfig(lr=0.1, weight_decay=0.5)
    opt = build_optimizer(net, cfg)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    groups = classify_parameters(net)
    assert "kan.spline_weight" in groups["decay"]
    for n, p in net.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if n in groups["decay"] else before[n]
        torch.testing.assert_close(p.detach(), expected)


def test_optim_config_validates_decay_settings_and_reads_old_cards():
    with pytest.raises(ValueError, match="optim.weight_decay must be a finite number >= 0, got -1"):
        OptimConfig(weight_decay=-1)
    with pytest.raises(ValueError, match="kan_weight_decay must be a finite number >= 0 or null, got -0.5"):
        OptimConfig(kan_weight_decay=-0.5)
    # Cards written before roles recorded kan_weight_decay: 0.0; it now means "no decay on KAN weights".
    assert OptimConfig.from_dict({"kan_weight_decay": 0.0, "kan_lr_mult": 1.0}).kan_weight_decay == 0.0


def test_no_trainable_parameters_is_a_clear_error():
    net = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(net, OptimConfig())


def test_unknown_optimizer_and_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        OptimConfig(name="sgd")
    with pytest.raises(ValueError, match=r"'lr_mult' \(did you mean 'kan_lr_mult'\?\)"):
        OptimConfig.from_dict({"lr_mult": 2})


def test_warmup_cosine_closed_form():
    sched = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    total = 110
    assert lr_factor(0, total_steps=total, schedule=sched) == pytest.approx(1 / 11)
    assert lr_factor(9, total_steps=total, schedule=sched) == pytest.approx(10 / 11)
    assert lr_factor(10, total_steps=total, schedule=sched) == pytest.approx(1.0)
    # halfway through the decay the cosine is at the mean of peak and floor
    mid = 10 + (total - 1 - 10) / 2
    assert lr_factor(int(mid), total_steps=total, schedule=sched) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / (total - 1 - 10)))
    )
    assert lr_factor(total - 1, total_steps=total, schedule=sched) == pytest.approx(0.1)
    linear = ScheduleConfig(name="linear", warmup_steps=0, min_lr_ratio=0.0)
    assert lr_factor(50, total_steps=101, schedule=linear) == pytest.approx(0.5)
    assert lr_factor(70, total_steps=101, schedule=ScheduleConfig(name="constant", warmup_steps=0)) == 1.0


def test_scheduler_follows_lr_factor_for_every_group():
    net = Net()
    cfg = OptimConfig(lr=2e-3, kan_lr_mult=5.0)
    opt = build_optimizer(net, cfg)
    sched_cfg = ScheduleConfig(warmup_ratio=0.1, min_lr_ratio=0.05)
    sched = build_scheduler(opt, total_steps=40, schedule=sched_cfg)
    for step in range(40):
        for group in opt.param_groups:
            base = cfg.lr * (cfg.kan_lr_mult if group["name"].startswith("kan") else 1.0)
            assert group["lr"] == pytest.approx(base * lr_factor(step, total_steps=40, schedule=sched_cfg))
        opt.step()
        sched.step()
