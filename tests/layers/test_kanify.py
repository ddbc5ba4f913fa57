"""kanify on transformers GPT-2, a timm ViT and small torch models: preserved outputs, training
through the new spline weights, pattern selection, tied weights and clear errors."""

import pytest
import timm
import torch
import transformers
from torch import nn

from kanzoo.layers import KANConv1d, KANConv2d, KANConv3d, KANLinear
from kanzoo.layers.kanify import kanify


def _one_step(model, loss_fn, lr=1e-2):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss = loss_fn()
    loss.backward()
    opt.step()
    return loss


def _tiny_gpt2(n_layer=2):
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=32, n_head=2, vocab_size=97, n_positions=32,
                                  bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0)  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_gpt2_mlp_preserve_identical_logits_then_trains():
    model = _tiny_gpt2()
    ids = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        before = model(ids).logits
    out = kanify(model, include="*.mlp.*", preserve=True)
    assert out is model
    summary = model.kanify_summary
    assert summary.swapped == [f"transformer.h.{i}.mlp.{n}" for i in range(2) for n in ("c_fc", "c_proj")]
    assert all(isinstance(model.transformer.h[i].mlp.c_fc, KANLinear) for i in range(2))
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # not matched
    fc = model.transformer.h[0].mlp.c_fc
    assert (fc.in_features, fc.out_features) == (32, 128) and fc.base_activation == "identity"
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)

    model.train()
    _one_step(model, lambda: model(ids, labels=ids).loss)
    assert fc.spline_weight.grad is not None and fc.spline_weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        stepped = model(ids).logits
    assert (stepped - before).abs().max() > 1e-4


def test_gpt2_everything_keeps_tied_lm_head():
    model = _tiny_gpt2(n_layer=1)
    ids = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        before = model(ids).logits
    kanify(model, preserve=True)
    assert model.kanify_summary.num_swapped == 5 and "lm_head" in model.kanify_summary.tied
    assert model.lm_head.base_weight is model.transformer.wte.weight
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=1e-6)


def test_timm_vit_preserve_identical_then_trains():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
        embed_dim=48, num_heads=2, num_classes=10,
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    kanify(model, preserve=True, grid_size=3)
    assert isinstance(model.patch_embed.proj, KANConv2d)
    assert isinstance(model.blocks[1].mlp.fc2, KANLinear) and isinstance(model.head, KANLinear)
    assert model.kanify_summary.num_swapped == 10
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)
    model.train()
    target = torch.tensor([1, 7])
    _one_step(model, lambda: nn.functional.cross_entropy(model(x), target))
    assert model.patch_embed.proj.spline_weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert (model(x) - before).abs().max() > 1e-4


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, padding_mode="reflect")
        self.c3 = nn.Conv3d(2, 2, 2, bias=False, dilation=1)
        self.head = nn.Linear(4 + 4 + 2, 5)

    def forward(self, x1, x2, x3):
        a = self.c1(x1).mean(-1)
        b = self.c2(x2).mean((-1, -2))
        c = self.c3(x3).mean((-1, -2, -3))
        return self.head(torch.cat([a, b, c], dim=1))


def test_small_cnn_all_conv_kinds_keep_dtype_and_outputs():
    net = _SmallNet().double()
    inputs = (torch.randn(3, 2, 9, dtype=torch.float64), torch.randn(3, 2, 8, 8, dtype=torch.float64),
              torch.randn(3, 2, 4, 4, 4, dtype=torch.float64))  # fmt: skip
    before = net(*inputs).detach()
    kanify(net, preserve=True, exclude="head")
    assert (
        isinstance(net.c1, KANConv1d)
        and isinstance(net.c2, KANConv2d)
        and isinstance(net.c3, KANConv3d)
        and isinstance(net.head, nn.Linear)
    )
    assert (net.c2.groups, net.c2.stride, net.c2.padding_mode) == (2, (2, 2), "reflect")
    assert net.c3.bias is None and net.c1.spline_weight.dtype == torch.float64
    torch.testing.assert_close(net(*inputs), before, rtol=0, atol=1e-12)


def test_preserve_false_forwards_kwargs_and_changes_the_function():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(5, 4)
    before = net(x).detach()
    kanify(net, include="0", basis="bspline", grid_size=7, base_activation="gelu")
    assert isinstance(net[0], KANLinear) and isinstance(net[2], nn.Linear)
    assert net[0].basis.grid_size == 7 and net[0].base_activation == "gelu"
    assert not torch.allclose(net(x), before)


def test_torch_transformer_layer_children_are_skipped_and_outputs_kept():
    # nn.TransformerEncoderLayer's eval fast path and nn.MultiheadAttention read child weights directly.
    enc = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
    net = nn.Sequential(enc, nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        before = net(x)
    kanify(net, preserve=True)
    assert isinstance(net[1], KANLinear) and isinstance(enc.linear1, nn.Linear)
    assert {"0.linear1", "0.linear2", "0.self_attn.out_proj"} <= set(net.kanify_summary.skipped)
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="reads its weight directly"):
        kanify(enc, include="*linear*")


def test_root_module_and_errors():
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    new = kanify(lin, preserve=True)
    assert isinstance(new, KANLinear)
    torch.testing.assert_close(new(x), lin(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no nn.Linear"):
        kanify(nn.Sequential(nn.Linear(3, 2)), include="nothing.*")
    with pytest.raises(ValueError, match="base_activation"):
        kanify(nn.Sequential(nn.Linear(3, 2)), preserve=True, base_activation="silu")
    with pytest.raises(ValueError, match="no nn.Linear"):
        kanify(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("basis", ["rbf", "chebyshev", "fourier", "rational"])
def test_preserve_with_other_bases(basis):
    net = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    x = torch.randn(4, 6)
    before = net(x).detach()
    kanify(net, preserve=True, basis=basis)
    assert all(isinstance(net[i], KANLinear) for i in (0, 2))
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-6)
    net(x).sum().backward()
    assert net[0].spline_weight.grad.abs().sum() > 0
