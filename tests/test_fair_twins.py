"""Every (KAN model, twin) pair of the registry is optimised alike under the default recipe.

For each pair (``model_info(name)["twin"]`` and ``["matched_twin"]``), with the shipped
``configs/optim/adamw.yaml``:

1. the two models differ only in their swapped layers: every parameter name is either in both
   models or inside a KAN layer (KAN side) / inside the module it replaced (twin side);
2. a parameter name present in both gets the same group, weight decay and learning rate;
3. every KAN layer's weight matrices (``base_weight``, ``spline_weight``) get exactly the weight
   decay and learning rate of the twin's ``nn.Linear``/``nn.ConvNd`` weight at the same place,
   and that decay is the recipe's (non-zero) ``weight_decay``;
4. a sound bound on the gap between the decayed parameter shares. With ``U`` the undecayed
   parameter count and ``T`` the total, ``share = 1 - U/T`` and ``U = U_shared + U_swapped``, so
   ``|share_kan - share_twin| <= |U_shared_twin/T_twin - U_shared_kan/T_kan|
   + U_swapped_kan/T_kan + U_swapped_twin/T_twin``. The swapped-layer terms are bounded from
   the layers' attributes alone, not from the role code: a KAN layer may leave only its bias,
   its standalone scaler and its basis coefficients undecayed, a twin layer only its bias.

Models are built on the meta device (shapes only), which keeps the test fast.
"""

import functools
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from kanzoo.layers import is_kan_layer
from kanzoo.models import create_model, list_models, model_info
from kanzoo.train import OptimConfig
from kanzoo.train.optim import param_groups

ROOT = Path(__file__).resolve().parents[1]


def _pairs() -> list[tuple[str, str]]:
    pairs = []
    for name in list_models():
        info = model_info(name)
        if info["twin_of"] is not None or info.get("alias_of"):
            continue
        pairs += [(name, info[key]) for key in ("twin", "matched_twin") if info[key]]
    return pairs


PAIRS = _pairs()


def _default_recipe() -> OptimConfig:
    values = yaml.safe_load((ROOT / "configs/optim/adamw.yaml").read_text())
    values.pop("schedule", None)
    values["lr"] = 1e-3  # the YAML interpolates the experiment's recipe.lr
    return OptimConfig.from_dict(values)


@functools.cache
def _build(name: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return create_model(name)
    except NotImplementedError:  # an init computing on real tensors (e.g. a first rational fit)
        return create_model(name)


def _settings(model: nn.Module, cfg: OptimConfig) -> dict[str, tuple[str, float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in param_groups(model, cfg):
        for p in group["params"]:
            out[names[id(p)]] = (group["name"], group["weight_decay"], group["lr"])
    return out


def _inside(name: str, prefixes: set[str]) -> bool:
    return any(name.startswith(prefix + ".") for prefix in prefixes)


def _numel(model: nn.Module, names) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names)


def test_the_registry_has_kan_twin_pairs_of_every_family():
    families = {model_info(kan)["family"] for kan, _ in PAIRS}
    assert {"kan_gpt", "kan_vit", "conv_kan", "kan_unet"} <= families, families
    assert len(PAIRS) >= 8


@pytest.mark.parametrize("kan_name,twin_name", PAIRS)
def test_kan_model_and_twin_are_optimised_alike(kan_name, twin_name):
    cfg = _default_recipe()
    assert cfg.weight_decay > 0
    kan, twin = _build(kan_name), _build(twin_name)
    sk, st = _settings(kan, cfg), _settings(twin, cfg)
    assert set(sk) == {n for n, p in kan.named_parameters() if p.requires_grad}

    swapped = {n: m for n, m in kan.named_modules() if is_kan_layer(m)}
    assert swapped, f"{kan_name} has no KAN layer"
    twin_modules = dict(twin.named_modules())

    # 1. Same model apart from the swapped layers.
    shared = set(sk) & set(st)
    assert all(_inside(n, set(swapped)) for n in set(sk) - shared), sorted(set(sk) - shared)[:5]
    assert all(_inside(n, set(swapped)) for n in set(st) - shared), sorted(set(st) - shared)[:5]

    # 2. Same name, same treatment.
    differ = {n: (sk[n], st[n]) for n in shared if sk[n] != st[n]}
    assert not differ, list(differ.items())[:5]

    # 3. Swapped weight matrices decayed exactly as the twin's weights.
    u_swapped_kan = u_swapped_twin = 0
    for name, layer in swapped.items():
        ref = twin_modules.get(name)
        assert isinstance(ref, (nn.Linear, nn.modules.conv._ConvNd)), (name, type(ref))
        ref_wd, ref_lr = st[f"{name}.weight"][1:]
        assert ref_wd == cfg.weight_decay and ref_lr == cfg.lr
        for attr in ("base_weight", "spline_weight"):
            if getattr(layer, attr) is not None:
                assert sk[f"{name}.{attr}"][1:] == (ref_wd, ref_lr), (name, attr, sk[f"{name}.{attr}"])
        extras = [layer.bias, layer.spline_scaler, *layer.basis.parameters()]
        u_swapped_kan += sum(t.numel() for t in extras if t is not None)
        u_swapped_twin += ref.bias.numel() if ref.bias is not None else 0

    # 4. The decayed-share gap is no larger than what biases, gains and coefficients explain.
    def undecayed(settings, names):
        return [n for n in names if settings[n][1] == 0.0]

    t_kan, t_twin = _numel(kan, sk), _numel(twin, st)
    share_kan = 1 - _numel(kan, undecayed(sk, sk)) / t_kan
    share_twin = 1 - _numel(twin, undecayed(st, st)) / t_twin
    u_shared_kan = _numel(kan, undecayed(sk, shared))
    u_shared_twin = _numel(twin, undecayed(st, shared))
    bound = abs(u_shared_twin / t_twin - u_shared_kan / t_kan)
    bound += u_swapped_kan / t_kan + u_swapped_twin / t_twin
    gap = abs(share_kan - share_twin)
    assert gap <= bound + 1e-12, (
        f"decayed share {kan_name} {share_kan:.3f} vs {twin_name} {share_twin:.3f}: "
        f"gap {gap:.3f} > bound {bound:.3f}"
    )


# ---------------------------------------------------------------------------------------------
# Twin semantics on the layer side: GR-KAN layers carry no redundant standalone scaler in any
# family, and a user can still ask for one.


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("kan_vit_tiny", {}),
        ("kan_gpt_nano", {"ffn_layer": "kan_rational", "layer_kwargs": {}}),
        ("kan_unet_tiny", {"token_layer": "kan_rational", "layer_kwargs": {}}),
    ],
)
def test_rational_kan_layers_have_no_scaler_in_every_family(name, overrides):
    with torch.device("meta"):
        model = create_model(name, **overrides)
        layers = [m for m in model.modules() if is_kan_layer(m)]
        assert layers and all(type(m.basis).__name__ == "RationalBasis" for m in layers)
        assert all(m.spline_scaler is None for m in layers)
        explicit = create_model(name, **{**overrides, "layer_kwargs": {"spline_scaler": True}})
        layers = [m for m in explicit.modules() if is_kan_layer(m)]
        assert layers and all(m.spline_scaler is not None for m in layers)
