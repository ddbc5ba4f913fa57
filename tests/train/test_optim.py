"""Parameter groups, AdamW decay behaviour and the warmup + cosine schedule."""

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


def test_classify_parameters_puts_every_parameter_in_exactly_one_group():
    net = Net()
    groups = classify_parameters(net)
    flat = [n for names in groups.values() for n in names]
    assert sorted(flat) == sorted(n for n, _ in net.named_parameters())
    assert set(groups["kan"]) == {
        "kan.spline_weight",
        "kan.spline_scaler",
        *[n for n, _ in net.named_parameters() if n.startswith("rational.basis.")],
        *[n for n, _ in net.named_parameters() if n.startswith("rational.spline")],
    }
    assert any(n.startswith("rational.basis.") for n in groups["kan"])  # rational coefficients
    assert set(groups["decay"]) == {"kan.base_weight", "head.weight"}
    assert {"embed.weight", "norm.weight", "norm.bias", "kan.bias", "head.bias", "gain"} <= set(
        groups["no_decay"]
    )


def test_tied_weights_are_counted_once():
    net = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7, bias=False))
    net[1].weight = net[0].weight
    groups = classify_parameters(net)
    assert sum(len(v) for v in groups.values()) == 1


def test_param_groups_apply_kan_lr_multiplier_and_decay_settings():
    cfg = OptimConfig(lr=1e-3, weight_decay=0.1, kan_lr_mult=3.0, kan_weight_decay=0.02)
    groups = {g["name"]: g for g in param_groups(Net(), cfg)}
    assert groups["kan"]["lr"] == pytest.approx(3e-3) and groups["kan"]["weight_decay"] == 0.02
    assert groups["decay"]["lr"] == 1e-3 and groups["decay"]["weight_decay"] == 0.1
    assert groups["no_decay"]["weight_decay"] == 0.0
    net = Net()
    names = {id(p): n for n, p in net.named_parameters()}
    with_emb = {
        g["name"]: [names[id(p)] for p in g["params"]]
        for g in param_groups(net, OptimConfig(decay_embeddings=True))
    }
    assert "embed.weight" in with_emb["decay"] and "embed.weight" not in with_emb["no_decay"]


def test_adamw_decays_only_the_decay_group():
    """With zero gradients AdamW's update is pure decoupled decay: p <- p * (1 - lr * wd)."""
    net = Net()
    cfg = OptimConfig(lr=0.1, weight_decay=0.5, kan_weight_decay=0.0)
    opt = build_optimizer(net, cfg)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    groups = classify_parameters(net)
    for n, p in net.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if n in groups["decay"] else before[n]
        torch.testing.assert_close(p.detach(), expected)


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
            base = cfg.lr * (cfg.kan_lr_mult if group["name"] == "kan" else 1.0)
            assert group["lr"] == pytest.approx(base * lr_factor(step, total_steps=40, schedule=sched_cfg))
        opt.step()
        sched.step()
