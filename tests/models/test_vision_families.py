"""Conv-KAN, KAN-UNet and KAN-ViT against independent references (plain torch, timm)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import kanzoo.models as zoo
from kanzoo.layers import KANConv2d, KANLinear, get_linear_layer, is_kan_layer
from kanzoo.models.conv_kan import BasicBlock
from kanzoo.models.kan_unet import KANUNet, TokenKANLayer
from kanzoo.models.kan_vit import KANMlp


def _randomize_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# -- Conv-KAN -----------------------------------------------------------------------------------


def test_basic_block_matches_functional_reference():
    block = BasicBlock(nn.Conv2d, 4, 8, stride=2, act="relu").eval()
    _randomize_bn(block)
    x = torch.randn(2, 4, 10, 10)
    c1, c2, sc = block.conv1.conv, block.conv2, block.shortcut[0]
    h = F.relu(_bn(F.conv2d(x, c1.weight, stride=2, padding=1), block.conv1.bn))
    h = _bn(F.conv2d(h, c2.weight, padding=1), block.bn2)
    ref = F.relu(h + _bn(F.conv2d(x, sc.weight, stride=2), block.shortcut[1]))
    with torch.no_grad():
        assert torch.allclose(block(x), ref, atol=1e-5)


def test_conv_kan_uses_kan_convolutions_everywhere_and_downsamples():
    model = zoo.create_model("conv_kan_tiny", num_classes=5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | KANConv2d)]
    assert convs and all(isinstance(m, KANConv2d) for m in convs)
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert model.config.stem_stride == 2
    assert feats.shape == (2, 4 * model.config.base_width, 4, 4)
    assert (
        zoo.create_model("conv_kan_tiny", stem_stride=1).forward_features(torch.randn(1, 3, 32, 32)).shape[-1]
        == 8
    )
    assert model(torch.randn(2, 3, 20, 28)).shape == (2, 5)  # any size: global pooling
    with pytest.raises(ValueError, match=r"expected pixel_values of shape \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 32, 32))


def test_conv_kan_layer_options_reach_the_layers():
    model = zoo.create_model("conv_kan_tiny", conv_layer="kan_rbf", layer_kwargs={"grid_size": 6})
    conv = model.stem.conv
    assert isinstance(conv, KANConv2d) and type(conv.basis).__name__.lower().startswith("rbf")
    assert conv.basis.num_features == 6


# -- KAN-UNet -----------------------------------------------------------------------------------


def test_token_layer_matches_functional_reference():
    layer = TokenKANLayer(6, 10, get_linear_layer("linear")).eval()
    _randomize_bn(layer)
    h, w = 4, 5
    tokens = torch.randn(2, h * w, 6)

    def mix(t, m):
        b, n, c = t.shape
        grid = t.transpose(1, 2).reshape(b, c, h, w)
        y = F.conv2d(grid, m.conv.weight, m.conv.bias, padding=1, groups=c)
        return F.relu(_bn(y, m.bn)).flatten(2).transpose(1, 2)

    ref = mix(F.linear(tokens, layer.fc1.weight, layer.fc1.bias), layer.mix1)
    ref = mix(F.linear(ref, layer.fc2.weight, layer.fc2.bias), layer.mix2)
    ref = mix(F.linear(ref, layer.fc3.weight, layer.fc3.bias), layer.mix3)
    with torch.no_grad():
        assert torch.allclose(layer(tokens, (h, w)), ref, atol=1e-5)


def test_depthwise_mixing_is_spatial():
    """Token i's output depends on its 3x3 grid neighbours only (depthwise convs between the maps)."""
    layer = TokenKANLayer(3, 3, get_linear_layer("linear")).eval()
    h = w = 8
    tokens = torch.randn(1, h * w, 3, requires_grad=True)
    out = layer(tokens, (h, w))
    out[0, 0].sum().backward()  # token (0, 0): three 3x3 convs reach rows/cols 0..3
    touched = tokens.grad[0].abs().sum(-1).reshape(h, w) > 0
    assert touched[:4, :4].any() and not touched[4:, :].any() and not touched[:, 4:].any()


def test_unet_stride_error_names_stride_and_nearest_size():
    model = zoo.create_model("kan_unet_tiny")
    assert model.stride == 32
    with pytest.raises(
        ValueError, match=r"divisible by its network stride 32.*got 60x70.*Nearest valid size: 64x64"
    ):
        model(torch.randn(1, 3, 60, 70))
    small = zoo.create_model("unet_tiny", conv_channels=[4, 8], token_dims=[8])
    assert small.stride == 8
    assert small(torch.randn(1, 3, 40, 24)).shape == (1, 1, 40, 24)
    with pytest.raises(ValueError, match=r"stride 8.*got 38x42.*Nearest valid size: 40x40"):
        small(torch.randn(1, 3, 38, 42))


def test_unet_heads_channels_and_structure():
    binary = zoo.create_model("kan_unet_tiny", in_chans=1)
    assert binary(torch.randn(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    multi = zoo.create_model("kan_unet_tiny", num_classes=4)
    assert multi(torch.randn(2, 3, 32, 32)).shape == (2, 4, 32, 32)
    # U-KAN layout: plain convs in the conv stages, KAN only inside the token stages (encoder + decoder)
    kan_paths = [n for n, m in multi.named_modules() if isinstance(m, KANLinear)]
    assert kan_paths and all(p.startswith(("token_stages.", "decoder_tokens.")) for p in kan_paths)
    assert len(multi.token_stages) == len(multi.decoder_tokens) == 2
    assert not any(isinstance(m, KANConv2d) for m in multi.modules())
    kan_convs = zoo.create_model("kan_unet_tiny", conv_layer="kan")
    assert any(isinstance(m, KANConv2d) for m in kan_convs.modules())


def test_unet_skip_connections_carry_fine_detail():
    """Perturbing one input pixel changes the output near it more than far away (skips work)."""
    torch.manual_seed(0)
    model: KANUNet = zoo.create_model("unet_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[0, :, 5, 5] += 5.0
    with torch.no_grad():
        diff = (model(y) - model(x)).abs()[0, 0]
    assert diff[3:8, 3:8].mean() > 3 * diff[40:, 40:].mean()


# -- KAN-ViT ------------------------------------------------------------------------------------


def test_vit_twin_is_timm_vit():
    """vit_tiny has timm's parameter names: a timm VisionTransformer's weights load and agree exactly."""
    torch.manual_seed(0)
    ref = VisionTransformer(
        img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4, num_classes=10
    ).eval()
    twin = zoo.create_model("vit_tiny").eval()
    twin.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin(x), ref(x))


def test_rational_kan_ffn_starts_as_the_gelu_mlp():
    """KAT init: identity rational before fc1, GELU-fit rational before fc2, so copying an MLP's
    weights gives (up to the rational fit of GELU) the MLP's output."""
    torch.manual_seed(0)
    mlp = Mlp(16, 64, act_layer=nn.GELU).eval()
    kan = KANMlp(16, 64, layer="kan_rational").eval()
    assert (
        isinstance(kan.fc1, KANLinear) and kan.fc1.spline_scaler is None and isinstance(kan.act, nn.Identity)
    )
    with torch.no_grad():
        kan.fc1.spline_weight.copy_(mlp.fc1.weight.unsqueeze(-1))
        kan.fc1.bias.copy_(mlp.fc1.bias)
        kan.fc2.spline_weight.copy_(mlp.fc2.weight.unsqueeze(-1))
        kan.fc2.bias.copy_(mlp.fc2.bias)
        x = torch.randn(8, 16)
        ref, got = mlp(x), kan(x)
    assert torch.allclose(got, ref, atol=2e-2 * ref.abs().max().item())
    assert not torch.equal(got, ref)  # a fit, not the same function


def test_vit_bspline_option_and_timm_features():
    model = zoo.create_model("kan_vit_tiny", mlp_layer="kan", layer_kwargs={"grid_size": 4}, depth=2)
    fc1 = model.blocks[0].mlp.fc1
    assert isinstance(fc1, KANLinear) and fc1.basis.grid_size == 4 and fc1.base_activation == "silu"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    pooled = zoo.create_model("kan_vit_tiny", global_pool="avg", dynamic_img_size=True, depth=1)
    assert pooled(torch.randn(1, 3, 48, 40)).shape == (1, 10)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        zoo.create_model("kan_vit_tiny", img_size=30)


def test_matched_twin_follows_overrides():
    kan = zoo.count_parameters(
        zoo.create_model("conv_kan_tiny", num_classes=3, layer_kwargs={"grid_size": 8})
    )
    twin = zoo.create_model("cnn_tiny_matched", num_classes=3, layer_kwargs={"grid_size": 8})
    assert twin.config.conv_layer == "conv" and twin.config.layer_kwargs == {}
    assert abs(zoo.count_parameters(twin) - kan) <= 0.05 * kan
    assert twin.config.base_width > zoo.create_model("cnn_tiny_matched", num_classes=3).config.base_width


# -- KAN-UNet, variant="ukan" (the reference U-KAN; its import is tested in tests/convert) ------


def test_ukan_variant_biases_differ_only_where_ukan_differs():
    from kanzoo.models.kan_unet import TokenStage

    default = zoo.create_model("kan_unet_tiny")
    ukan = zoo.create_model("kan_unet_ukan_tiny")
    twin = zoo.create_model("unet_ukan_tiny")
    for model, conv_bias, token_bias in ((default, False, True), (ukan, True, False), (twin, True, True)):
        pairs = [*model.encoder, *model.decoder, model.final]
        assert all((m.bias is not None) == conv_bias for p in pairs for m in p if isinstance(m, nn.Conv2d))
        stages = [m for m in model.modules() if isinstance(m, TokenStage)]
        fcs = [getattr(b.layer, f"fc{i}") for s in stages for b in s.blocks for i in (1, 2, 3)]
        assert fcs and all((fc.bias is not None) == token_bias for fc in fcs)
    assert all(isinstance(fc, KANLinear) for fc in ukan.modules() if hasattr(fc, "spline_weight"))
    assert ukan.config.layer_kwargs == {} and ukan.config.mlp_ratio == 1.0


def test_ukan_variant_drop_path_schedule_is_ukans():
    """U-KAN: dpr = linspace(0, r, 3); block1/dblock1 take dpr[0], block2/dblock2 take dpr[1]."""
    rate = 0.3
    model = zoo.create_model("kan_unet_ukan_tiny", drop_path_rate=rate)
    dpr = torch.linspace(0, rate, 3).tolist()
    enc = [s.blocks[0].drop_path.p for s in model.token_stages]
    dec = [s.blocks[0].drop_path.p for s in model.decoder_tokens]
    assert enc == pytest.approx(dpr[:2]) and dec == pytest.approx(dpr[:2])


def test_ukan_variant_initialisation():
    torch.manual_seed(0)
    model = zoo.create_model("kan_unet_ukan_tiny")
    layer = model.token_stages[1].blocks[0].layer
    fc = layer.fc1
    bound = 1 / fc.in_features**0.5  # kaiming_uniform(a=sqrt(5)) of the standalone spline scale
    assert fc.spline_scaler.abs().max() <= bound and fc.spline_scaler.std() > bound / 4
    # spline coefficients interpolate noise in +-0.05/G at the G + 1 knots inside the range
    k, g = fc.basis.spline_order, fc.basis.grid_size
    knots = fc.basis.grid[:, k : k + g + 1].T
    with torch.no_grad():
        values = torch.einsum("nif,oif->noi", fc.basis(knots), fc.spline_weight)
    assert values.abs().max() <= 0.05 / g + 1e-6 and values.abs().max() > 0.05 / g / 2
    # depthwise convs: normal(0, sqrt(2 / fan_out)) with fan_out = 9, zero bias; the conv pairs keep torch's
    dw = layer.mix1.conv
    assert not dw.bias.any() and abs(dw.weight.std().item() - (2 / 9) ** 0.5) < 0.1
    assert model.encoder[0][0].bias.any()
    twin_fc = zoo.create_model("unet_ukan_tiny").token_stages[0].blocks[0].layer.fc1
    assert not twin_fc.bias.any() and abs(twin_fc.weight.std().item() - 0.02) < 0.002  # trunc_normal(.02)


def test_ukan_variant_validation():
    from kanzoo.models.kan_unet import ukan_layout

    assert ukan_layout([256, 320, 512]) == {"conv_channels": [32, 64, 256], "token_dims": [320, 512]}
    with pytest.raises(ValueError, match="three widths"):
        ukan_layout([4, 8])
    with pytest.raises(ValueError, match="mlp_ratio=1.0"):
        zoo.create_model("kan_unet_ukan_tiny", mlp_ratio=2.0)
    with pytest.raises(ValueError, match="variant must be one of"):
        zoo.create_model("kan_unet_tiny", variant="unext")


# -- KAN-ViT presets of KAT (github.com/Adamdad/kat, katransformer.py) --------------------------

# KAT's registered models: embed dim, depth, heads (mlp_ratio 4, 8 rational groups, qkv bias,
# class token, LayerNorm eps 1e-6, no layer scale, 224x224 with 16x16 patches, 1000 classes).
_KAT = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


@pytest.mark.parametrize("size", sorted(_KAT))
@pytest.mark.parametrize("act", ["", "_swish"])
def test_kat_presets(size, act):
    from kanzoo.models import kan_vit

    dim, depth, heads = _KAT[size]
    assert kan_vit._SIZES[f"{size}_patch16_224"]["depth"] == depth
    # one block is enough to check the rest of the preset (a ViT-B with 12 blocks is slow to build)
    model = zoo.create_model(f"kan_vit_{size}{act}_patch16_224", depth=1)
    c = model.config
    assert (c.embed_dim, c.num_heads, c.img_size, c.patch_size, c.num_classes) == (dim, heads, 224, 16, 1000)
    assert c.mlp_ratio == 4.0 and c.qkv_bias and c.global_pool == "token" and c.init_values is None
    block = model.blocks[0]
    assert isinstance(block.ls1, nn.Identity) and block.norm1.eps == 1e-6 and model.norm.eps == 1e-6
    assert block.attn.qkv.bias is not None and model.cls_token is not None
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    assert fc1.basis.num_groups == fc2.basis.num_groups == 8 and fc2.in_features == 4 * dim
    assert fc1.basis.numerator.shape == (8, 6) and fc1.basis.denominator.shape == (8, 4)
    assert fc2.basis.init == ("silu" if act else "gelu") and fc1.basis.init == "identity"


def test_swish_rational_init_is_swish():
    """rational_init="silu" starts fc2's rational as x * sigmoid(x) (closed form), fc1's as identity."""
    mlp = KANMlp(8, 16, layer="kan_rational", rational_init="silu")
    x = torch.linspace(-3, 3, 121).unsqueeze(-1).expand(-1, 16)
    with torch.no_grad():
        r2 = mlp.fc2.basis(x).squeeze(-1)
        r1 = mlp.fc1.basis(x[:, :8]).squeeze(-1)
    assert torch.allclose(r2, x * torch.sigmoid(x), atol=1e-2)
    assert torch.equal(r1, x[:, :8])
    with pytest.raises(ValueError, match="rational_init"):
        zoo.create_model("kan_vit_tiny", rational_init="relu")


def test_kat_mimetic_attention_init():
    """weight_init="kat_mimetic": per head W_q, W_k are the leading SVD factors of 0.7 (I + U) and
    W_v W_proj = -0.4 (I + U') with |U| <= sqrt(3 / dim) entrywise (KAT's weight_init kan_mimetic)."""
    dim, heads = 32, 4
    torch.manual_seed(0)
    model = zoo.create_model(
        "kan_vit_tiny", embed_dim=dim, num_heads=heads, depth=2, weight_init="kat_mimetic"
    )
    default = zoo.create_model("kan_vit_tiny", embed_dim=dim, num_heads=heads, depth=2)
    bound = math.sqrt(3.0 / dim)
    hd = dim // heads
    for block, plain in zip(model.blocks, default.blocks, strict=True):
        w = block.attn.qkv.weight.detach().double()
        for h in range(heads):
            q, k = w[h * hd : (h + 1) * hd], w[dim + h * hd : dim + (h + 1) * hd]
            # symmetric split U sqrt(S) / sqrt(S) V^T: equal, orthogonal, non-increasing row norms
            gram_q, gram_k = q @ q.T, k @ k.T
            torch.testing.assert_close(gram_q, gram_k, rtol=1e-5, atol=1e-5)
            diag = gram_q.diagonal()
            torch.testing.assert_close(gram_q, torch.diag(diag), rtol=0, atol=1e-5)
            assert (diag[:-1] >= diag[1:] - 1e-5).all()
        vp = w[2 * dim :] @ block.attn.proj.weight.detach().double()
        noise = vp / -0.4 - torch.eye(dim, dtype=torch.float64)
        assert bound / 4 < noise.abs().max() <= bound + 1e-5
        # everything else is timm's ViT init: zero biases, the FFN as without the option
        assert torch.equal(block.attn.qkv.bias, torch.zeros_like(block.attn.qkv.bias))
        assert block.mlp.fc1.spline_weight.std() < 0.03 and plain.mlp.fc1.spline_weight.std() < 0.03
    with pytest.raises(ValueError, match="weight_init"):
        zoo.create_model("kan_vit_tiny", weight_init="jax")


# -- twins by construction: node activation and biases follow the BUILT layers -------------------


@pytest.mark.parametrize(
    "layer", [nn.Linear, functools.partial(nn.Linear), "Linear"], ids=["class", "partial", "Linear"]
)
def test_kan_mlp_with_a_plain_linear_layer_is_timms_gelu_mlp(layer):
    """However the Linear layer is spelled, the FFN is timm's Mlp: fc2(GELU(fc1(x)))."""
    torch.manual_seed(0)
    ref = Mlp(8, 16, act_layer=nn.GELU).eval()
    ffn = KANMlp(8, 16, layer=layer).eval()
    assert isinstance(ffn.act, nn.GELU)
    ffn.load_state_dict(ref.state_dict())
    x = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), ref(x), rtol=0, atol=0)


def test_kan_mlp_with_a_gr_kan_partial_starts_as_kat():
    """A GR-KAN layer given as a partial (not the "kan_rational" string) is still a KAN layer: no
    node activation, and fc2's rational starts as the GELU fit while fc1's is the identity."""
    gr_kan = functools.partial(KANLinear, basis="rational", base_activation=None, spline_scaler=False)
    by_partial = KANMlp(8, 16, layer=gr_kan)
    by_name = KANMlp(8, 16, layer="kan_rational")
    assert isinstance(by_partial.act, nn.Identity)
    for fc in ("fc1", "fc2"):
        a, b = getattr(by_partial, fc).basis, getattr(by_name, fc).basis
        assert a.init == b.init
        assert torch.equal(a.numerator, b.numerator) and torch.equal(a.denominator, b.denominator)
    x = torch.linspace(-3, 3, 61).unsqueeze(-1).expand(-1, 16)
    with torch.no_grad():
        gelu_fit = by_partial.fc2.basis(x).squeeze(-1)
    assert torch.allclose(gelu_fit, F.gelu(x), atol=2e-2)


def test_unet_token_bias_follows_the_built_layer(monkeypatch):
    """U-KAN's rule (bias-free KAN token layers, biased Linear ones) reads the layers the factory
    builds, not the spec string: a factory that builds nn.Linear for any spec keeps the bias."""
    from kanzoo.models import kan_unet

    small = dict(embed_dims=[8, 8, 16])
    ukan = zoo.create_model("kan_unet_ukan_tiny", **small)
    assert all(fc.bias is None for fc in _token_fcs(ukan))
    monkeypatch.setattr(kan_unet, "get_linear_layer", lambda spec, **kwargs: nn.Linear)
    plain = zoo.create_model("kan_unet_ukan_tiny", **small)  # config still says token_layer="kan"
    fcs = _token_fcs(plain)
    assert fcs and all(type(fc) is nn.Linear and fc.bias is not None for fc in fcs)


def _token_fcs(model: nn.Module) -> list[nn.Module]:
    return [m for n, m in model.named_modules() if n.split(".")[-1] in ("fc1", "fc2", "fc3")]


# -- gradient checkpointing: same loss, gradients and BatchNorm statistics, fewer saved tensors ----


def _saved_tensors_of_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, count


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("conv_kan_tiny", dict(base_width=4, drop_path_rate=0.3, drop_rate=0.2), 16),
        ("kan_vit_tiny", dict(depth=2, embed_dim=32, drop_path_rate=0.3, proj_drop_rate=0.1), 32),
        ("kan_unet_tiny", dict(conv_channels=[4, 4, 8], token_dims=[8, 8], drop_path_rate=0.3), 32),
    ],
)
def test_gradient_checkpointing_changes_memory_not_results(name, kwargs, size):
    x = torch.randn(2, 3, size, size)
    results = []
    for enable in (False, True):
        torch.manual_seed(0)
        model = zoo.create_model(name, **kwargs).train()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(1)  # the same dropout / drop-path draws in both runs
        out, saved = _saved_tensors_of_forward(model, x)
        loss = out.float().pow(2).mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        stats = {n: b.clone() for n, b in model.named_buffers()}
        results.append((loss.detach(), grads, stats, saved))
    (loss0, grads0, stats0, saved0), (loss1, grads1, stats1, saved1) = results
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=0)
    assert grads0.keys() == grads1.keys()
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-5, atol=1e-7, msg=n)
    for n in stats0:  # BatchNorm running statistics: updated once per forward, not again in backward
        torch.testing.assert_close(stats1[n], stats0[n], rtol=0, atol=0, msg=n)
    assert saved1 < saved0 / 2, (saved0, saved1)  # checkpointing is really on


def test_drop_path_drops_whole_samples():
    from kanzoo.models._vision import DropPath

    layer = DropPath(0.25)
    x = torch.ones(4000, 3, 2, 2)
    y = layer.train()(x)
    kept = y.flatten(1).amax(1) > 0
    assert ((y[kept] == 1 / 0.75).all()) and (y[~kept] == 0).all()  # per sample, rescaled
    assert abs((~kept).float().mean().item() - 0.25) < 0.03
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ValueError, match="drop path rate"):
        DropPath(1.0)


# -- KAN-UNet as a segmentation backbone ----------------------------------------------------------


def test_unet_encoder_features_match_the_network_and_feature_info():
    model: KANUNet = zoo.create_model("kan_unet_tiny").eval()
    info = model.feature_info
    assert [f["num_chs"] for f in info] == [8, 16, 32, 48, 64]
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    x = torch.randn(2, 3, 64, 96)
    # reference: the encoder modules run by hand (conv pairs then 2x2 max-pool; embed then tokens)
    ref, h = [], x
    with torch.no_grad():
        for stage in model.encoder:
            h = F.max_pool2d(stage(h), 2)
            ref.append(h)
        for embed, stage in zip(model.embeds, model.token_stages):
            h = stage(embed(h))
            ref.append(h)
        final, maps = model.forward_intermediates(x)
        for f, r, m in zip(info, ref, maps, strict=True):
            assert m.shape == (2, f["num_chs"], 64 // f["reduction"], 96 // f["reduction"])
            torch.testing.assert_close(m, r, rtol=0, atol=0)
        torch.testing.assert_close(final, ref[-1], rtol=0, atol=0)
        torch.testing.assert_close(model.forward_features(x), ref[-1], rtol=0, atol=0)
        picked = model.forward_intermediates(x, indices=[1, -1], intermediates_only=True, stop_early=True)
        assert [p.shape[1] for p in picked] == [16, 64]
    with pytest.raises(ValueError, match=r"divisible by its network stride 32.*Nearest valid size"):
        model.forward_features(torch.randn(1, 3, 60, 64))


def test_unet_as_a_timm_feature_extractor():
    """timm's FeatureGetterNet (what features_only builds for timm's ViTs) over KAN-UNet: the
    decoder is pruned away and the selected encoder maps train like any backbone's."""
    from timm.models._features import FeatureGetterNet

    torch.manual_seed(0)
    model = zoo.create_model("kan_unet_tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=(0, 2, 3), intermediates_only=True)
    full = zoo.count_parameters(model)
    backbone = FeatureGetterNet(model, out_indices=(0, 2, 3))
    assert backbone.feature_info.channels() == [8, 32, 48]
    assert backbone.feature_info.reduction() == [2, 8, 16]
    assert zoo.count_parameters(backbone) < full  # decoder, head and the last token stage are gone
    with torch.no_grad():
        for got, want in zip(backbone(x), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    backbone.train()
    sum(f.mean() for f in backbone(x)).backward()
    assert all(p.grad is not None for p in backbone.parameters())  # no unused parameters (DDP)
    assert model(x).shape == (2, 48, 4, 4)  # pruned: forward is the deepest kept level
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 48, 3, 3)  # its stride is now 16


# -- torch.fx: the models trace (KAN layers as leaf modules), the input checks stay in the graph --


class _KANLeafTracer(torch.fx.Tracer):
    """torch.fx's tracer with KAN layers as leaves (as timm's tracer has them, see models/_timm.py)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_kan_layer(m) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> torch.fx.GraphModule:
    return torch.fx.GraphModule(model, _KANLeafTracer().trace(model))


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("conv_kan_tiny", dict(drop_path_rate=0.2), 32),
        ("kan_vit_tiny", dict(depth=2, drop_path_rate=0.2), 32),
        ("kan_unet_tiny", dict(conv_channels=[4, 4, 8], token_dims=[8, 8], drop_path_rate=0.2), 32),
    ],
)
def test_models_trace_with_torch_fx(name, kwargs, size):
    torch.manual_seed(0)
    model = zoo.create_model(name, **kwargs)
    x = torch.randn(2, 3, size, size)
    traced = _trace(model.eval())
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
    if name != "kan_vit_tiny":  # (timm's ViT checks its input with timm's own traced assert)
        assert "check_image" in traced.code
        with pytest.raises(ValueError, match=r"expected pixel_values of shape \(B, 3, H, W\)"):
            traced(torch.randn(2, 1, size, size))
    if name != "kan_unet_tiny":
        return  # timm's own suite (tests/ecosystem) traces and trains the timm models
    # training mode (drop path active): same draws, same loss and gradients as eager
    traced_train = _trace(model.train())
    losses, grads = [], []
    for module in (model, traced_train):
        module.zero_grad()
        torch.manual_seed(1)
        loss = module(x).pow(2).mean()
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in module.parameters()])
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=0)
    for g1, g0 in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(g1, g0, rtol=0, atol=0)


def test_kan_layer_input_check_lets_fx_proxies_through():
    """While torch.fx traces a KAN layer its input is a Proxy: the check returns the parameters'
    dtype instead of rejecting it; eager inputs are checked as before."""
    graph = torch.fx.Graph()
    proxy = torch.fx.Proxy(graph.placeholder("x"), torch.fx.proxy.GraphAppendingTracer(graph))
    for layer, bad in ((KANLinear(3, 2), torch.randn(4, 5)), (KANConv2d(3, 2, 3), torch.randn(1, 5, 4, 4))):
        assert layer._check_input(proxy) == torch.float32
        assert layer.double()._check_input(proxy) == torch.float64
        with pytest.raises(ValueError, match="expected input of shape"):
            layer(bad.double())
