"""Every registered model, parametrized over list_models(): a new model is tested for free.

Inputs are tiny (batch 2, 32x32 images, 8 tokens). The default sizes (tiny/nano and their twins)
run by default; larger sizes are marked slow (``pytest -m slow``), with the ImageNet-shaped
variants shrunk (img_size=32, depth=2).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kanzoo.models as zoo
from kanzoo.layers import KANConvNd, KANLinear


def _heavy(name: str) -> bool:
    """Sizes above the CPU-trainable defaults (tiny/nano) run only with ``-m slow``."""
    return any(tag in name for tag in ("_small", "_mini", "_base", "_large", "_224"))


def _params(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n for n in names]


ALL = _params(zoo.list_models())
KAN_WITH_TWIN = _params([n for n in zoo.list_models() if zoo.model_info(n)["twin"] is not None])
MATCHED = _params([n for n in zoo.list_models() if zoo.model_info(n)["matched"]])

_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Identity)


def _overrides(name: str) -> dict:
    """Shrink the ImageNet-shaped variants so the generic tests stay fast."""
    size = zoo.model_info(name).get("input_size")
    if size is not None and size[-1] > 64:
        return {"img_size": 32, "depth": 2}
    return {}


def _inputs(name: str, model: nn.Module) -> dict:
    info = zoo.model_info(name)
    if info["task"] == "lm":
        vocab = int(model.config.vocab_size)
        ids = torch.randint(0, vocab, (2, 8))
        return {"input_ids": ids, "labels": ids}
    if info["task"] == "segmentation":
        return {"pixel_values": torch.randn(2, 3, 32, 32)}  # the UNets' stride is 32
    if info["task"] in ("forecasting", "regression", "pde"):  # one tensor of the model's input_size
        return {"x": torch.randn(2, *info["input_size"])}
    return {"pixel_values": torch.randn(2, 3, 32, 32)}


def _logits(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return zoo.create_model(name, **_overrides(name))


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_finite_and_gradients(name):
    model = _build(name).train()
    batch = _inputs(name, model)
    out = model(**batch)
    logits = _logits(out)
    task = zoo.model_info(name)["task"]
    if task == "lm":
        assert logits.shape == (2, 8, model.config.vocab_size)
        loss = out.loss
        assert loss.ndim == 0
    elif task == "segmentation":
        assert logits.shape == (2, model.config.num_classes, 32, 32)
        loss = logits.square().mean()
    elif task == "forecasting":
        assert logits.shape == (2, model.config.horizon, model.config.num_channels)
        loss = logits.square().mean()
    elif task in ("regression", "pde"):
        assert logits.shape == (2, model.config.out_features)
        loss = logits.square().mean()
    else:
        assert logits.shape == (2, model.config.num_classes)
        loss = logits.square().mean()
    assert torch.isfinite(logits).all()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    # A zero gradient is legitimate only for rational denominators at their identity init
    # (d|b|/db = 0 at b = 0); everything else must actually receive signal.
    dead = [
        n
        for n, p in model.named_parameters()
        if p.grad is not None and not p.grad.any() and "denominator" not in n
    ]
    assert not dead, f"parameters with an all-zero gradient: {dead}"


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name, tmp_path):
    model = _build(name).eval()
    batch = _inputs(name, model)
    batch.pop("labels", None)
    with torch.no_grad():
        expected = _logits(model(**batch))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt")), "pickle files written"
    loaded = zoo.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        got = _logits(loaded(**batch))
    assert torch.equal(got, expected)
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)


def _kan_layer(module: nn.Module) -> bool:
    return isinstance(module, KANLinear | KANConvNd)


@pytest.mark.parametrize("name", KAN_WITH_TWIN)
def test_twin_differs_only_in_swapped_layers(name):
    """Same module tree; the only differences are KAN layers <-> nn.Linear/nn.ConvNd at the same
    paths (same widths), and the node activation a KAN layer makes redundant (Identity <-> GELU)."""
    twin_name = zoo.model_info(name)["twin"]
    kan, twin = _build(name), zoo.create_model(twin_name, **_overrides(twin_name))
    kan_modules, twin_modules = dict(kan.named_modules()), dict(twin.named_modules())
    swapped = [n for n, m in kan_modules.items() if _kan_layer(m)]
    assert swapped, f"{name} has no KAN layer"
    assert not [n for n, m in twin_modules.items() if _kan_layer(m)], f"{twin_name} has KAN layers"

    def under_swapped(path: str) -> bool:
        return any(path.startswith(s + ".") for s in swapped)

    kan_paths = {n for n in kan_modules if not under_swapped(n)}
    assert kan_paths == set(twin_modules), "module trees differ: " + str(
        sorted(kan_paths ^ set(twin_modules))
    )
    act_swaps = 0
    for path in kan_paths:
        a, b = kan_modules[path], twin_modules[path]
        if path in swapped:
            if isinstance(a, KANLinear):
                assert isinstance(b, nn.Linear), path
                assert (a.in_features, a.out_features) == (b.in_features, b.out_features), path
            else:
                assert isinstance(b, nn.Conv1d | nn.Conv2d | nn.Conv3d), path
                assert (a.in_channels, a.out_channels) == (b.in_channels, b.out_channels), path
        elif type(a) is not type(b):
            assert isinstance(a, nn.Identity) and isinstance(b, _ACTIVATIONS), (
                f"{path}: {type(a)} vs {type(b)}"
            )
            act_swaps += 1
        else:
            own_a = {k: v.shape for k, v in a.named_parameters(recurse=False)}
            own_b = {k: v.shape for k, v in b.named_parameters(recurse=False)}
            assert own_a == own_b, f"{path}: parameters differ"
    assert act_swaps <= len(swapped)


@pytest.mark.parametrize("name", MATCHED)
def test_matched_twin_within_five_percent(name):
    target = zoo.model_info(name)["twin_of"]
    kan = zoo.count_parameters(zoo.create_model(target, **_overrides(target)))
    twin = zoo.count_parameters(zoo.create_model(name, **_overrides(name)))
    assert math.isclose(twin, kan, rel_tol=0.05), (name, twin, kan)
    plain = zoo.model_info(target)["twin"]
    if plain is not None:  # matching is needed at all: the plain twin is further off (or equal)
        plain_count = zoo.count_parameters(zoo.create_model(plain, **_overrides(plain)))
        assert abs(twin - kan) <= abs(plain_count - kan)
