"""KAT (Adamdad/kat + Adamdad/rational_kat_cu) checkpoints against a plain-torch KAT forward.

The state dicts are built here under KAT's key names and shapes (random, non-trivial values: per-group
rational denominators with mixed signs, a shared numerator, LayerNorm affines); the reference forward
follows ``KATVisionTransformer.forward`` in functional torch with the group rational written out from
the formula of KAT's CUDA/Triton kernels, independent of kanzoo's layers and of timm.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

import kanzoo.models as zoo
from kanzoo.convert.kat import from_kat, load_kat_state_dict
from kanzoo.models.kan_vit import KANViT

# ------------------------------------------------------------------------------- KAT state dicts


def _kat_state_dict(
    *,
    embed_dim: int = 32,
    depth: int = 2,
    img_size: int = 32,
    patch: int = 8,
    in_chans: int = 3,
    num_classes: int = 5,
    num_groups: int = 8,
    mlp_ratio: int = 4,
    shared_numerator: bool = True,
    avg_pool: bool = False,
    layer_scale: bool = False,
    dtype=torch.float64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random tensors under KAT's names and shapes (``KATVisionTransformer`` with ``KAN`` MLPs)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0, mean=0.0):
        return (mean + std * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)

    d, h = embed_dim, embed_dim * mlp_ratio
    tokens = (img_size // patch) ** 2 + 1
    sd = {
        "cls_token": rnd(1, 1, d, std=0.5),
        "pos_embed": rnd(1, tokens, d, std=0.5),
        "patch_embed.proj.weight": rnd(d, in_chans, patch, patch, std=0.1),
        "patch_embed.proj.bias": rnd(d, std=0.1),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {
            b + "norm1.weight": rnd(d, std=0.2, mean=1.0),
            b + "norm1.bias": rnd(d, std=0.1),
            b + "attn.qkv.weight": rnd(3 * d, d, std=d**-0.5),
            b + "attn.qkv.bias": rnd(3 * d, std=0.1),
            b + "attn.proj.weight": rnd(d, d, std=d**-0.5),
            b + "attn.proj.bias": rnd(d, std=0.1),
            b + "norm2.weight": rnd(d, std=0.2, mean=1.0),
            b + "norm2.bias": rnd(d, std=0.1),
            b + "mlp.fc1.weight": rnd(h, d, std=d**-0.5),
            b + "mlp.fc1.bias": rnd(h, std=0.1),
            b + "mlp.fc2.weight": rnd(d, h, std=h**-0.5),
            b + "mlp.fc2.bias": rnd(d, std=0.1),
        }
        for act in ("act1", "act2"):
            rows = 1 if shared_numerator else num_groups
            sd[b + f"mlp.{act}.weight_numerator"] = rnd(rows, 6, std=0.4)
            sd[b + f"mlp.{act}.weight_denominator"] = rnd(num_groups, 4, std=0.8)  # signs matter: |b|
        if layer_scale:
            sd[b + "ls1.gamma"] = rnd(d, std=0.3, mean=0.5)
            sd[b + "ls2.gamma"] = rnd(d, std=0.3, mean=0.5)
    norm = "fc_norm" if avg_pool else "norm"
    sd[norm + ".weight"] = rnd(d, std=0.2, mean=1.0)
    sd[norm + ".bias"] = rnd(d, std=0.1)
    sd["head.weight"] = rnd(num_classes, d, std=d**-0.5)
    sd["head.bias"] = rnd(num_classes, std=0.1)
    return sd


# ----------------------------------------------------------------------- reference KAT forward


def _group_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """KAT_Group: channel c uses group c // (D / G); P(x) / (1 + sum_j |b_j| |x|^j)."""
    groups = denominator.shape[0]
    num = numerator.expand(groups, -1)  # KAT_Group shares one numerator row across groups
    xs = x.unflatten(-1, (groups, x.shape[-1] // groups))  # (..., G, D/G)
    p = sum(num[:, k, None] * xs**k for k in range(num.shape[1]))
    q = 1 + sum(denominator[:, j - 1, None].abs() * xs.abs() ** j for j in range(1, denominator.shape[1] + 1))
    return (p / q).flatten(-2)


def _kat_forward(sd: dict[str, torch.Tensor], images: torch.Tensor, num_heads: int) -> torch.Tensor:
    d = sd["patch_embed.proj.weight"].shape[0]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # (B, N, D)
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + sd["pos_embed"]

    def ln(t, name):
        return F.layer_norm(t, (d,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)

    hd = d // num_heads
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}."
        y = ln(x, b + "norm1")
        qkv = y @ sd[b + "attn.qkv.weight"].T + sd[b + "attn.qkv.bias"]
        q, k, v = qkv.unflatten(-1, (3, num_heads, hd)).permute(2, 0, 3, 1, 4)  # each (B, H, N, hd)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        y = (weights @ v).transpose(1, 2).flatten(2)
        y = y @ sd[b + "attn.proj.weight"].T + sd[b + "attn.proj.bias"]
        x = x + y * sd.get(b + "ls1.gamma", 1.0)
        y = ln(x, b + "norm2")
        y = _group_rational(y, sd[b + "mlp.act1.weight_numerator"], sd[b + "mlp.act1.weight_denominator"])
        y = y @ sd[b + "mlp.fc1.weight"].T + sd[b + "mlp.fc1.bias"]
        y = _group_rational(y, sd[b + "mlp.act2.weight_numerator"], sd[b + "mlp.act2.weight_denominator"])
        y = y @ sd[b + "mlp.fc2.weight"].T + sd[b + "mlp.fc2.bias"]
        x = x + y * sd.get(b + "ls2.gamma", 1.0)
        i += 1
    if "fc_norm.weight" in sd:  # global_pool="avg": mean of patch tokens, then fc_norm
        pooled = ln(x[:, 1:].mean(dim=1), "fc_norm")
    else:
        pooled = ln(x, "norm")[:, 0]
    return pooled @ sd["head.weight"].T + sd["head.bias"]


def _images(n=3, size=32, chans=3, dtype=torch.float64, seed=1):
    return torch.randn(n, chans, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------- parity


def test_group_rational_reference_matches_kat_formula_pointwise():
    # the written-out reference against a scalar evaluation of KAT's kernel formula
    gen = torch.Generator().manual_seed(3)
    num, den = torch.randn(1, 6, generator=gen, dtype=torch.float64), torch.randn(4, 4, generator=gen)
    den = den.double()
    x = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    got = _group_rational(x, num, den)
    for r in range(2):
        for c in range(8):
            g, v = c // 2, float(x[r, c])
            p = sum(float(num[0, k]) * v**k for k in range(6))
            q = 1 + sum(abs(float(den[g, j])) * abs(v) ** (j + 1) for j in range(4))
            assert got[r, c].item() == pytest.approx(p / q, rel=1e-12, abs=1e-12)


def test_logits_match_kat_float64():
    sd = _kat_state_dict()
    model = from_kat(sd, num_heads=4)
    assert isinstance(model, KANViT) and not model.training
    c = model.config
    assert (c.embed_dim, c.depth, c.img_size, c.patch_size, c.num_classes) == (32, 2, 32, 8, 5)
    assert c.layer_kwargs["num_groups"] == 8 and c.global_pool == "token" and c.rational_init == "silu"
    x = _images()
    ref = _kat_forward(sd, x, num_heads=4)
    with torch.no_grad():
        out = model(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    # the import really depends on the rationals: perturbing one denominator changes the logits
    sd2 = dict(sd)
    sd2["blocks.1.mlp.act2.weight_denominator"] = sd["blocks.1.mlp.act2.weight_denominator"] * 2.0
    assert (_kat_forward(sd2, x, 4) - ref).abs().max() > 1e-4


def test_avg_pool_layer_scale_and_per_group_numerators():
    # fc_norm (global_pool="avg"), layer scale gammas, and KAT_1DGroup's (G, 6) numerators
    sd = _kat_state_dict(avg_pool=True, layer_scale=True, shared_numerator=False, num_groups=4, seed=5)
    model = from_kat(sd, num_heads=2)
    assert model.config.global_pool == "avg" and model.config.init_values is not None
    x = _images(seed=6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _kat_forward(sd, x, 2), rtol=1e-10, atol=1e-10)


def test_float32_checkpoint_and_preset_name():
    # embed 192 is KAT-Tiny's width: 3 heads by default; a registered name fixes the rest
    sd = _kat_state_dict(embed_dim=192, depth=1, img_size=32, patch=16, num_classes=7, dtype=torch.float32)
    model = from_kat(sd, model_name="kan_vit_tiny_swish_patch16_224")
    assert model.config.num_heads == 3 and model.config.depth == 1 and model.config.img_size == 32
    assert model.head.weight.dtype == torch.float32
    x = _images(n=2, dtype=torch.float32)
    ref = _kat_forward({k: v.double() for k, v in sd.items()}, x.double(), 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x).double(), ref, rtol=1e-4, atol=1e-5)
    gelu = from_kat(sd, model_name="kan_vit_tiny_patch16_224")
    assert gelu.config.rational_init == "gelu"
    assert from_kat(sd, act_init="gelu").config.rational_init == "gelu"


def test_num_classes_other_than_checkpoint_gives_fresh_head():
    sd = _kat_state_dict()
    model = from_kat(sd, num_heads=4, num_classes=3)
    assert model.head.weight.shape == (3, 32) and model.config.num_classes == 3
    x = _images()
    kept = from_kat(sd, num_heads=4, num_classes=5)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_head(model.forward_features(x), pre_logits=True),
            kept.forward_head(kept.forward_features(x), pre_logits=True),
        )


# ------------------------------------------------------------------------ files and wrappers


class _NotATensor:
    """Any pickled class outside torch's weights_only allow-list."""


def test_wrappers_prefixes_and_files(tmp_path):
    sd = _kat_state_dict(seed=2)
    x = _images()
    ref = _kat_forward(sd, x, 4)
    wrapped = {"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    pth = tmp_path / "kat.pth"
    torch.save(wrapped, pth)
    ema = {k: v * 0 + 1 if k == "head.bias" else v for k, v in sd.items()}
    torch.save(  # a timm train.py checkpoint: raw and EMA weights plus the argparse arguments
        {
            "state_dict": {"_orig_mod." + k: v for k, v in sd.items()},
            "state_dict_ema": ema,
            "args": argparse.Namespace(model="kat_tiny_patch16_224", lr=1e-3),
        },
        tmp_path / "train.pth.tar",
    )
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "kat.safetensors"))
    for source in (wrapped, pth, str(tmp_path / "kat.safetensors"), tmp_path / "train.pth.tar"):
        with torch.no_grad():
            torch.testing.assert_close(from_kat(source, num_heads=4)(x), ref, rtol=1e-10, atol=1e-10)
    assert load_kat_state_dict(tmp_path / "train.pth.tar", use_ema=True)["head.bias"].eq(1).all()
    with pytest.raises(ValueError, match="use_ema"):
        load_kat_state_dict(pth, use_ema=True)
    with pytest.raises(FileNotFoundError):
        from_kat(tmp_path / "missing.pth", num_heads=4)
    torch.save({"model": sd, "extra": _NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only"):  # arbitrary objects are never unpickled
        from_kat(tmp_path / "pickled.pth", num_heads=4)
    (tmp_path / "kat.txt").write_text("x")
    with pytest.raises(ValueError, match="safetensors"):
        from_kat(tmp_path / "kat.txt", num_heads=4)


def test_save_pretrained_round_trip(tmp_path):
    sd = _kat_state_dict(seed=4)
    model = from_kat(sd, num_heads=4)
    model.save_pretrained(tmp_path / "kat")
    again = zoo.from_pretrained(tmp_path / "kat")
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(again.double()(x), _kat_forward(sd, x, 4), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------- errors


def test_bad_checkpoints_name_the_keys():
    sd = _kat_state_dict()
    missing = {k: v for k, v in sd.items() if k != "blocks.1.mlp.act2.weight_denominator"}
    with pytest.raises(ValueError, match=r"missing keys \(1\): blocks\.1\.mlp\.act2\.weight_denominator"):
        from_kat(missing, num_heads=4)
    extra = {**sd, "blocks.0.mlp.act3.weight_numerator": torch.zeros(1, 6, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): blocks\.0\.mlp\.act3"):
        from_kat(extra, num_heads=4)
    bad = {**sd, "blocks.1.mlp.fc2.weight": torch.zeros(32, 100, dtype=torch.float64)}
    shape_error = r"shape mismatches .*blocks\.1\.mlp\.fc2\.weight: checkpoint \(32, 100"
    with pytest.raises(ValueError, match=shape_error):
        from_kat(bad, num_heads=4)
    with pytest.raises(ValueError, match="pass num_heads"):
        from_kat(sd)
    with pytest.raises(ValueError, match="num_heads=5"):
        from_kat(sd, num_heads=5)
    with pytest.raises(ValueError, match="do not divide"):
        from_kat(_kat_state_dict(num_groups=6), num_heads=4)
    with pytest.raises(ValueError, match="model_name"):
        from_kat(sd, num_heads=4, model_name="vit_tiny")
    with pytest.raises(ValueError, match="act_init"):
        from_kat(sd, num_heads=4, act_init="relu")
    with pytest.raises(ValueError, match="patch_embed"):
        from_kat({"head.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="no tensors"):
        from_kat({"optimizer": {"lr": 1.0}})


# ------------------------------------------------------------------------- real KAT-Tiny size


@pytest.mark.slow
def test_kat_tiny_full_size_float32():
    sd = _kat_state_dict(
        embed_dim=192, depth=12, img_size=224, patch=16, num_classes=1000, dtype=torch.float32
    )
    model = from_kat(sd)
    x = _images(n=2, size=224, dtype=torch.float32)
    ref = _kat_forward({k: v.double() for k, v in sd.items()}, x.double(), 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x).double(), ref, rtol=1e-4, atol=1e-4)
