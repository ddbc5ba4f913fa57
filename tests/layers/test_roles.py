"""Parameter roles: declared by the KAN layers and bases, assigned to any model from the owning
module; the factory's per-basis rule (no standalone scaler for the rational basis)."""

import functools

import pytest
import torch
from torch import nn

from kanzoo.layers import (
    ROLES,
    KANConv1d,
    KANConv2d,
    KANLinear,
    get_conv_layer,
    get_linear_layer,
    kan_parameter_names,
    parameter_roles,
)
from kanzoo.layers.bases import RationalBasis


def test_kan_linear_and_conv_declare_roles_of_every_parameter():
    for layer in (KANLinear(4, 3), KANConv2d(4, 6, 3, groups=2)):
        roles = layer.parameter_roles()
        expected = {
            "base_weight": "weight",
            "spline_weight": "weight",
            "spline_scaler": "gain",
            "bias": "bias",
        }
        assert roles == expected
        assert set(roles) == {n for n, _ in layer.named_parameters()}
    gr = KANLinear(8, 5, basis="rational", base_activation=None, spline_scaler=False, bias=False)
    assert gr.parameter_roles() == {
        "spline_weight": "weight",
        "basis.numerator": "coefficient",
        "basis.denominator": "coefficient",
    }
    assert set(gr.parameter_roles()) == {n for n, _ in gr.named_parameters()}


class _Free(nn.Module):
    """A module with free parameters of each fallback kind."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))
        self.matrix = nn.Parameter(torch.zeros(4, 4))
        self.bias = nn.Parameter(torch.zeros(4))
        self.shift_bias = nn.Parameter(torch.zeros(4))


class _Declares(nn.Module):
    """Re-declares a child's parameter (outermost declaration wins) and one of its own."""

    def __init__(self):
        super().__init__()
        self.inner = KANLinear(3, 3)
        self.token = nn.Parameter(torch.zeros(1, 2, 3))

    def parameter_roles(self):
        return {"token": "embedding", "inner.spline_weight": "coefficient"}


class _TimmStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 3))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 3))
        self.proj = nn.Linear(3, 3)

    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "dist_token"}  # dist_token is absent, as in timm


def test_model_roles_from_owning_modules_hooks_and_fallback():
    model = nn.ModuleDict(
        {
            "emb": nn.Embedding(10, 3),
            "ln": nn.LayerNorm(3),
            "bn": nn.BatchNorm2d(3),
            "fc": nn.Linear(3, 4),
            "conv": nn.Conv2d(3, 4, 3),
            "tconv": nn.ConvTranspose1d(3, 4, 3),
            "attn": nn.MultiheadAttention(4, 2),
            "free": _Free(),
            "decl": _Declares(),
            "timm": _TimmStyle(),
            "kan": KANConv1d(3, 2, 3, basis="rational", base_activation=None),
        }
    )
    roles = parameter_roles(model)
    assert set(roles) == {n for n, _ in model.named_parameters()}
    assert set(roles.values()) <= set(ROLES)
    expected = {
        "emb.weight": "embedding",
        "ln.weight": "gain",
        "ln.bias": "bias",
        "bn.weight": "gain",
        "bn.bias": "bias",
        "fc.weight": "weight",
        "fc.bias": "bias",
        "conv.weight": "weight",
        "tconv.weight": "weight",
        "attn.in_proj_weight": "weight",
        "attn.in_proj_bias": "bias",
        "attn.out_proj.weight": "weight",
        "attn.out_proj.bias": "bias",
        "free.gain": "gain",
        "free.matrix": "weight",
        "free.bias": "bias",
        "free.shift_bias": "bias",
        "decl.token": "embedding",
        "decl.inner.spline_weight": "coefficient",  # the outer declaration wins
        "decl.inner.base_weight": "weight",
        "decl.inner.spline_scaler": "gain",
        "timm.pos_embed": "embedding",
        "timm.cls_token": "embedding",
        "timm.proj.weight": "weight",
        "kan.spline_weight": "weight",
        "kan.basis.numerator": "coefficient",
        "kan.basis.denominator": "coefficient",
        "kan.bias": "bias",
    }
    for name, role in expected.items():
        assert roles[name] == role, name
    kan = kan_parameter_names(model)
    assert kan == {n for n, _ in model.named_parameters() if n.startswith(("kan.", "decl.inner."))}


def test_tied_parameters_get_one_name_and_the_first_owners_role():
    model = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7, bias=False))
    model[1].weight = model[0].weight
    assert parameter_roles(model) == {"0.weight": "embedding"}


def test_bad_declarations_are_clear_errors():
    class BadRole(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, 2))

        def parameter_roles(self):
            return {"w": "matrix"}

    class BadName(BadRole):
        def parameter_roles(self):
            return {"v": "weight"}

    with pytest.raises(ValueError, match=r"BadRole.parameter_roles\(\) gives 'w' the role 'matrix'"):
        parameter_roles(nn.Sequential(BadRole()))
    with pytest.raises(ValueError, match=r"names 'v', which is not one of its parameters \(w\)"):
        parameter_roles(BadName())


def test_user_basis_parameters_are_coefficients():
    roles = KANLinear(3, 2, basis=functools.partial(RationalBasis, num_groups=1)).parameter_roles()
    assert roles["basis.numerator"] == roles["basis.denominator"] == "coefficient"


# ---------------------------------------------------------------------------------------------
# Equal treatment in function space: with zero gradients one AdamW step is pure decoupled decay.
# A KAN layer and the nn.Linear / nn.Conv it replaces must both come out scaled by (1 - lr * wd)
# (output minus bias), whatever the basis: every edge function shrinks exactly as the twin's map.


@pytest.mark.parametrize(
    "kan,twin,shape",
    [
        (lambda: KANLinear(5, 4), lambda: nn.Linear(5, 4), (7, 5)),
        (lambda: get_linear_layer("kan_rational", init="gelu")(5, 4), lambda: nn.Linear(5, 4), (7, 5)),
        (lambda: KANLinear(5, 4, basis="rbf", base_activation=None), lambda: nn.Linear(5, 4), (7, 5)),
        (lambda: KANConv2d(3, 4, 3, padding=1), lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 5)),
    ],
)
def test_zero_gradient_adamw_step_scales_kan_and_twin_maps_alike(kan, twin, shape):
    from kanzoo.train import OptimConfig, build_optimizer

    lr, wd = 0.1, 0.5
    cfg = OptimConfig(lr=lr, weight_decay=wd)
    x = torch.randn(*shape, dtype=torch.float64)
    for layer in (kan().double(), twin().double()):
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        bias = layer.bias.detach().reshape(-1, *([1] * (len(shape) - 2))).clone()
        with torch.no_grad():
            before = layer(x) - bias
        opt = build_optimizer(layer, cfg)
        for p in layer.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        with torch.no_grad():
            after = layer(x) - layer.bias.reshape(bias.shape)
        torch.testing.assert_close(after, (1 - lr * wd) * before, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.bias.detach().reshape(bias.shape), bias)


# ---------------------------------------------------------------------------------------------
# The factory's per-basis rule: the rational basis gets no standalone scaler.


def test_rational_layers_from_the_factory_have_no_scaler_unless_asked():
    assert get_linear_layer("kan_rational")(6, 4).spline_scaler is None
    assert get_linear_layer("KAN_Rational")(6, 4).spline_scaler is None
    assert get_linear_layer("kan", basis="rational")(6, 4).spline_scaler is None
    assert get_linear_layer(KANLinear, basis="rational")(6, 4).spline_scaler is None
    assert get_linear_layer(functools.partial(KANLinear, basis="rational"))(6, 4).spline_scaler is None
    assert get_linear_layer("kan", basis=RationalBasis)(6, 4).spline_scaler is None
    for dim in (1, 2, 3):
        assert get_conv_layer("kan_rational", dim=dim)(4, 4, 1).spline_scaler is None
    # Explicit requests win, and other bases keep their scaler.
    assert get_linear_layer("kan_rational", spline_scaler=True)(6, 4).spline_scaler.shape == (4, 6)
    conv = get_conv_layer("kan_rational", dim=2, spline_scaler=True)(4, 4, 3)
    assert conv.spline_scaler.shape == (4, 4, 3, 3)
    part = functools.partial(KANLinear, basis="rational", spline_scaler=True)
    assert get_linear_layer(part)(6, 4).spline_scaler is not None
    assert get_linear_layer("kan")(6, 4).spline_scaler is not None
    assert get_linear_layer("kan_rbf")(6, 4).spline_scaler is not None


def test_kanify_applies_the_factory_rule_too():
    from kanzoo.layers.kanify import kanify

    model = kanify(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 3)), include="*", basis="rational")
    assert all(m.spline_scaler is None for m in model)
    model = kanify(nn.Sequential(nn.Linear(4, 4)), include="*", basis="rational", spline_scaler=True)
    assert model[0].spline_scaler is not None
