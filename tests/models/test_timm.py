"""timm integration: registered names, pretrained cfgs, and loading kanzoo weights through timm."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

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


# -- timm's factory contract (the suite in tests/ecosystem runs timm's own tests; these pin details) --


@pytest.mark.parametrize("name", ["conv_kan_tiny", "kan_vit_tiny", "kan_vit_tiny_patch16_224"])
def test_factory_device_dtype_and_meta(name):
    model = timm.create_model(name, device="meta", dtype=torch.float64)
    assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    assert all(p.dtype == torch.float64 for p in model.parameters())
    with torch.device("meta"):  # the default-device context timm and transformers build under
        assert all(p.is_meta for p in timm.create_model(name).parameters())
    out = model(torch.randn(2, *model.pretrained_cfg["input_size"], device="meta", dtype=torch.float64))
    assert out.shape == (2, model.num_classes) and out.is_meta


def test_unknown_kwarg_is_timms_type_error_and_kanzoos_value_error():
    message = r"conv_kan_tiny\(\) got unexpected keyword argument\(s\) \['bogus'\]"
    with pytest.raises(TypeError, match=message):
        timm.create_model("conv_kan_tiny", bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        timm.create_model("kan_vit_tiny", bogus=1)


def test_meta_built_kan_vit_initialises_after_to_empty():
    """The rational coefficients and the (non-persistent) group map come back from init_weights."""
    torch.manual_seed(0)
    ref = timm.create_model("kan_vit_tiny", depth=1)
    model = timm.create_model("kan_vit_tiny", depth=1, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.fill_(float("nan") if t.is_floating_point() else -1)
    model.init_weights()
    for fc in ("fc1", "fc2"):
        got, want = getattr(model.blocks[0].mlp, fc).basis, getattr(ref.blocks[0].mlp, fc).basis
        for attr in ("numerator", "denominator", "group_index"):
            assert torch.equal(getattr(got, attr), getattr(want, attr)), (fc, attr)
    assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()


def test_drop_rates_follow_timms_schedules():
    vit = timm.create_model("kan_vit_tiny", drop_rate=0.3, drop_path_rate=0.2)
    ref = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4, drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in vit.blocks]
    assert rates == [getattr(b.drop_path1, "drop_prob", 0.0) for b in ref.blocks]
    assert rates[-1] == pytest.approx(0.2)
    assert vit.head_drop.p == 0.3
    cnn = timm.create_model("conv_kan_small", drop_rate=0.3, drop_path_rate=0.2)
    blocks = [b for stage in cnn.stages for b in stage]
    # timm's ResNet: block i of n drops with drop_path_rate * i / (n - 1)
    assert [b.drop_path.p for b in blocks] == pytest.approx(torch.linspace(0, 0.2, len(blocks)).tolist())
    assert cnn.head_drop.p == 0.3 and cnn.config.drop_path_rate == 0.2


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", "catavgmax"])
def test_conv_kan_global_pool_is_timms(pool):
    from timm.layers import SelectAdaptivePool2d

    model = timm.create_model("conv_kan_tiny", global_pool=pool, num_classes=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model(x)
    torch.testing.assert_close(pooled, SelectAdaptivePool2d(pool_type=pool, flatten=True)(feats))
    assert pooled.shape[1] == model.head_hidden_size
    model.reset_classifier(7)  # keeps the pooling; the head takes head_hidden_size features
    assert model.head.in_features == model.head_hidden_size and model.config.global_pool == pool
    unpooled = timm.create_model("conv_kan_tiny", global_pool="", num_classes=3).eval()
    assert unpooled(x).shape == (2, 3, 4, 4)  # the classifier at every location


def test_features_only_matches_forward_intermediates():
    """timm's wrappers (FeatureListNet by module names, FeatureGetterNet by forward_intermediates)
    give the same maps as the model's own forward_intermediates."""
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    model = timm.create_model("conv_kan_tiny").eval()
    with torch.no_grad():
        want = model.forward_intermediates(x, indices=(0, 2, 3), intermediates_only=True)
        for cls in ("list", "getter", "hook"):
            torch.manual_seed(0)
            kwargs = dict(features_only=True, out_indices=(0, 2, 3), feature_cls=cls)
            feats = timm.create_model("conv_kan_tiny", **kwargs)
            assert feats.feature_info.channels() == [12, 24, 48]
            for got, ref in zip(feats.eval()(x), want, strict=True):
                torch.testing.assert_close(got, ref, rtol=0, atol=0)
    vit = timm.create_model("kan_vit_tiny", features_only=True)
    assert vit.feature_info.channels() == [64, 64, 64] and vit.feature_info.reduction() == [4, 4, 4]
    assert [f.shape for f in vit(x)] == [(2, 64, 8, 8)] * 3


def test_kan_vit_set_input_size_keeps_config():
    model = timm.create_model("kan_vit_tiny", depth=1)
    model.set_input_size(img_size=(48, 48))
    assert model.config.img_size == 48 and model(torch.randn(1, 3, 48, 48)).shape == (1, 10)
    with pytest.raises(ValueError, match="square"):
        model.set_input_size(img_size=(48, 32))
