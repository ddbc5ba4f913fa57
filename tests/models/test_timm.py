"""timm integration: registered names, pretrained cfgs, and loading kanzoo weights through timm."""

from __future__ import annotations

import pytest
import timm
import torch

import kanzoo.models as zoo
from kanzoo.models._timm import timm_model_names

NAMES = timm_model_names()


def _small(name: str) -> dict:
    # the ImageNet-shaped variants are built at 32x32 with 2 blocks to keep the test fast
    return {"img_size": 32, "depth": 2} if name.endswith("_224") else {}


def test_expected_names_are_registered():
    assert {
        "conv_kan_tiny",
        "conv_kan_small",
        "kan_vit_tiny_patch16_224",
        "kan_vit_small_patch16_224",
    } <= set(NAMES)
    assert set(NAMES) <= set(timm.list_models())
    # timm's own models are not overwritten
    assert type(timm.create_model("vit_tiny_patch16_224", pretrained=False)).__module__.startswith("timm.")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if "small" in n or "224" in n else n for n in NAMES]
)
def test_timm_create_model(name):
    model = timm.create_model(name, num_classes=10, **_small(name))
    assert isinstance(model, zoo.KanzooModel)
    assert model.pretrained_cfg["architecture"] == name
    assert model.default_cfg is model.pretrained_cfg
    size = 32 if name.endswith("_224") else model.pretrained_cfg["input_size"][-1]
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # the same architecture as kanzoo's create_model: identical parameter names and shapes
    ref = zoo.create_model(name, num_classes=10, **_small(name))
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }


def test_default_num_classes_and_input_size_come_from_the_cfg():
    model = timm.create_model("conv_kan_tiny")
    assert model.num_classes == model.pretrained_cfg["num_classes"] == 10
    assert timm.create_model("kan_vit_tiny_patch16_224", depth=1).config.num_classes == 1000
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 32, 32)


@pytest.mark.parametrize("name", ["conv_kan_tiny", "kan_vit_tiny", "cnn_tiny"])
def test_pretrained_cfg_overlay_and_checkpoint_path_load_kanzoo_weights(name, tmp_path):
    torch.manual_seed(0)
    source = zoo.create_model(name).eval()
    source.save_pretrained(tmp_path)
    file = str(tmp_path / "model.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)

    torch.manual_seed(1)  # a different random init, so equality proves the weights were loaded
    via_overlay = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=file)).eval()
    via_path = timm.create_model(name, checkpoint_path=file).eval()
    fresh = timm.create_model(name).eval()
    with torch.no_grad():
        assert torch.equal(via_overlay(x), expected)
        assert torch.equal(via_path(x), expected)
        assert not torch.allclose(fresh(x), expected)


def test_pretrained_with_new_num_classes_keeps_the_backbone(tmp_path):
    torch.manual_seed(0)
    source = zoo.create_model("conv_kan_tiny").eval()
    source.save_pretrained(tmp_path)
    model = timm.create_model(
        "conv_kan_tiny",
        pretrained=True,
        num_classes=3,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors")),
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        assert torch.equal(model.forward_features(x), source.forward_features(x))
    assert model.config.num_classes == 3


def test_reset_classifier_keeps_config_in_sync(tmp_path):
    model = timm.create_model("kan_vit_tiny")
    model.reset_classifier(4)
    assert model.config.num_classes == 4
    model.save_pretrained(tmp_path)
    assert zoo.from_pretrained(tmp_path)(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def _as_kat_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A GR-KAN KAN-ViT's tensors under KAT's (github.com/Adamdad/kat) names and shapes."""
    import re

    out = {}
    for key, value in model.state_dict().items():
        m = re.match(r"^(blocks\.\d+\.mlp\.)fc(\d)\.basis\.(numerator|denominator)$", key)
        if m:  # KAT_Group keeps one numerator row shared by all groups
            out[f"{m[1]}act{m[2]}.weight_{m[3]}"] = value[:1].clone() if m[3] == "numerator" else value
        elif key.endswith(".spline_weight"):
            out[key[: -len("spline_weight")] + "weight"] = value.squeeze(-1)
        else:
            out[key] = value
    return out


def test_kat_checkpoint_loads_through_timm(tmp_path):
    name, small = "kan_vit_tiny_swish_patch16_224", {"img_size": 32, "depth": 2}
    torch.manual_seed(0)
    source = zoo.create_model(name, **small).eval()
    with torch.no_grad():  # non-trivial rationals: shared numerators, per-group denominators
        for block in source.blocks:
            for fc in (block.mlp.fc1, block.mlp.fc2):
                fc.basis.numerator.copy_(0.3 * torch.randn(1, 6).expand_as(fc.basis.numerator))
                fc.basis.denominator.normal_()
    kat = _as_kat_state_dict(source)
    assert "blocks.1.mlp.act2.weight_numerator" in kat and kat["blocks.0.mlp.fc1.weight"].dim() == 2
    file = tmp_path / "kat_tiny_patch16_224.pth"
    torch.save({"model": kat}, file)  # KAT's released files wrap the state dict in "model"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
        torch.manual_seed(1)
        via_path = timm.create_model(name, checkpoint_path=str(file), **small).eval()
        overlay = dict(file=str(file))
        via_overlay = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **small)
        plain = zoo.create_model(name, **small).eval()
        plain.load_state_dict(kat)
        for model in (via_path, via_overlay.eval(), plain):
            torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(zoo.create_model(name, **small).eval()(x), expected, atol=1e-3)
