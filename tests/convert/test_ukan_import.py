"""U-KAN (CUHK-AIM-Group/U-KAN, Seg_UKAN) checkpoints against a plain-torch U-KAN forward.

The state dicts are built here with U-KAN's key names and shapes (random, non-trivial values:
BatchNorm statistics, LayerNorm affines, spline scales, per-input knots); the reference forward
below follows ``UKAN.forward`` step by step in functional torch, with the B-spline basis written
from the textbook recursion, independent of kanzoo's layers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import kanzoo.models as zoo
from kanzoo.convert.ukan import from_ukan, load_ukan_state_dict
from kanzoo.models.kan_unet import KANUNet, ukan_layout

# ----------------------------------------------------------------------------- U-KAN state dicts


def _ukan_state_dict(
    embed_dims=(16, 24, 32),
    *,
    num_classes: int = 1,
    in_ch: int = 3,
    no_kan: bool = False,
    grid_size: int = 5,
    spline_order: int = 3,
    jitter_knots: bool = False,
    dtype=torch.float64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random tensors under U-KAN's names and shapes for ``UKAN(num_classes, embed_dims=...)``."""
    gen = torch.Generator().manual_seed(seed)
    e0, e1, e2 = embed_dims
    sd: dict[str, torch.Tensor] = {}

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=dtype) * scale

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    def conv(name, cin, cout, k, groups=1):
        sd[f"{name}.weight"] = rnd(cout, cin // groups, k, k, scale=math.sqrt(2.0 / (cin // groups * k * k)))
        sd[f"{name}.bias"] = rnd(cout, scale=0.1)

    def bn(name, c):
        sd[f"{name}.weight"] = uni(0.5, 1.5, c)
        sd[f"{name}.bias"] = uni(-0.2, 0.2, c)
        sd[f"{name}.running_mean"] = rnd(c, scale=0.3)
        sd[f"{name}.running_var"] = uni(0.5, 2.0, c)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(17)

    def ln(name, c):
        sd[f"{name}.weight"] = uni(0.6, 1.4, c)
        sd[f"{name}.bias"] = uni(-0.3, 0.3, c)

    def conv_pair(name, cin, cmid, cout):  # ConvLayer (cmid = cout) / D_ConvLayer (cmid = cin)
        conv(f"{name}.conv.0", cin, cmid, 3)
        bn(f"{name}.conv.1", cmid)
        conv(f"{name}.conv.3", cmid, cout, 3)
        bn(f"{name}.conv.4", cout)

    def token_map(name, cin, cout):
        if no_kan:
            sd[f"{name}.weight"] = rnd(cout, cin, scale=1 / math.sqrt(cin))
            sd[f"{name}.bias"] = rnd(cout, scale=0.1)
            return
        g, k = grid_size, spline_order
        h = 2.0 / g
        knots = (torch.arange(-k, g + k + 1, dtype=dtype) * h - 1.0).expand(cin, -1).clone()
        if jitter_knots:  # per-input, non-uniform knots (as after efficient-kan's update_grid)
            knots = knots + uni(-0.3 * h, 0.3 * h, cin, g + 2 * k + 1)
        sd[f"{name}.grid"] = knots
        sd[f"{name}.base_weight"] = rnd(cout, cin, scale=1 / math.sqrt(cin))
        sd[f"{name}.spline_weight"] = rnd(cout, cin, g + k, scale=0.5)
        sd[f"{name}.spline_scaler"] = uni(-1.0, 1.0, cout, cin) / math.sqrt(cin)

    def block(name, dim):
        ln(f"{name}.norm2", dim)
        for n in (1, 2, 3):
            token_map(f"{name}.layer.fc{n}", dim, dim)
            conv(f"{name}.layer.dwconv_{n}.dwconv", dim, dim, 3, groups=dim)
            bn(f"{name}.layer.dwconv_{n}.bn", dim)

    conv_pair("encoder1", in_ch, e0 // 8, e0 // 8)
    conv_pair("encoder2", e0 // 8, e0 // 4, e0 // 4)
    conv_pair("encoder3", e0 // 4, e0, e0)
    ln("norm3", e1)
    ln("norm4", e2)
    ln("dnorm3", e1)
    ln("dnorm4", e0)
    block("block1.0", e1)
    block("block2.0", e2)
    block("dblock1.0", e1)
    block("dblock2.0", e0)
    for name, cin, cout in (("patch_embed3", e0, e1), ("patch_embed4", e1, e2)):
        conv(f"{name}.proj", cin, cout, 3)
        ln(f"{name}.norm", cout)
    conv_pair("decoder1", e2, e2, e1)
    conv_pair("decoder2", e1, e1, e0)
    conv_pair("decoder3", e0, e0, e0 // 4)
    conv_pair("decoder4", e0 // 4, e0 // 4, e0 // 8)
    conv_pair("decoder5", e0 // 8, e0 // 8, e0 // 8)
    conv("final", e0 // 8, num_classes, 1)
    return sd


# ------------------------------------------------------------------------ plain-torch reference


def _bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """``B_{j,order}(x_i)`` for ``x (N, in)``, knots ``t (in, K)``: textbook recursion, one j at a time.

    Degree 0 is the indicator of ``[t_j, t_{j+1})``; then
    ``B_{j,p} = (x - t_j) / (t_{j+p} - t_j) B_{j,p-1} + (t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}) B_{j+1,p-1}``.
    """
    t = knots
    count = t.shape[1] - 1
    cols = [((x >= t[:, j]) & (x < t[:, j + 1])).to(x.dtype) for j in range(count)]
    for p in range(1, order + 1):
        nxt = []
        for j in range(count - p):
            a = (x - t[:, j]) / (t[:, j + p] - t[:, j]) * cols[j]
            b = (t[:, j + p + 1] - x) / (t[:, j + p + 1] - t[:, j + 1]) * cols[j + 1]
            nxt.append(a + b)
        cols = nxt
    return torch.stack(cols, dim=-1)


def _token_map(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    """U-KAN's fc<n>: efficient-kan KANLinear (no bias) or nn.Linear."""
    if f"{name}.weight" in sd:
        return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])
    knots = sd[f"{name}.grid"]
    order = knots.shape[1] - sd[f"{name}.spline_weight"].shape[2] - 1
    basis = _bspline_basis(x, knots, order)  # (N, in, n)
    coeff = sd[f"{name}.spline_weight"] * sd[f"{name}.spline_scaler"][..., None]
    return x * torch.sigmoid(x) @ sd[f"{name}.base_weight"].T + torch.einsum("nif,oif->no", basis, coeff)


def _bn(x, sd, name):
    return F.batch_norm(
        x,
        sd[f"{name}.running_mean"],
        sd[f"{name}.running_var"],
        sd[f"{name}.weight"],
        sd[f"{name}.bias"],
        training=False,
        eps=1e-5,
    )


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def _conv_pair(x, sd, name):
    for i in (0, 3):
        x = F.conv2d(x, sd[f"{name}.conv.{i}.weight"], sd[f"{name}.conv.{i}.bias"], padding=1)
        x = F.relu(_bn(x, sd, f"{name}.conv.{i + 1}"))
    return x


def _kan_block(tokens, sd, name, h, w):
    b, n, c = tokens.shape
    y = _ln(tokens, sd, f"{name}.norm2")
    for i in (1, 2, 3):
        y = _token_map(y.reshape(b * n, c), sd, f"{name}.layer.fc{i}").reshape(b, n, c)
        fmap = y.transpose(1, 2).reshape(b, c, h, w)
        dw = f"{name}.layer.dwconv_{i}"
        fmap = F.conv2d(fmap, sd[f"{dw}.dwconv.weight"], sd[f"{dw}.dwconv.bias"], padding=1, groups=c)
        y = F.relu(_bn(fmap, sd, f"{dw}.bn")).flatten(2).transpose(1, 2)
    return tokens + y


def _tokens_to_map(tokens, h, w):
    return tokens.reshape(tokens.shape[0], h, w, -1).permute(0, 3, 1, 2)


def _up(x):
    return F.relu(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


def ukan_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """``UKAN.forward`` in eval mode, from its state dict."""
    t1 = F.relu(F.max_pool2d(_conv_pair(x, sd, "encoder1"), 2, 2))
    t2 = F.relu(F.max_pool2d(_conv_pair(t1, sd, "encoder2"), 2, 2))
    t3 = F.relu(F.max_pool2d(_conv_pair(t2, sd, "encoder3"), 2, 2))
    out = t3
    for embed, blk, norm in (("patch_embed3", "block1", "norm3"), ("patch_embed4", "block2", "norm4")):
        out = F.conv2d(out, sd[f"{embed}.proj.weight"], sd[f"{embed}.proj.bias"], stride=2, padding=1)
        h, w = out.shape[-2:]
        tokens = _ln(out.flatten(2).transpose(1, 2), sd, f"{embed}.norm")
        tokens = _ln(_kan_block(tokens, sd, f"{blk}.0", h, w), sd, norm)
        out = _tokens_to_map(tokens, h, w)
        if embed == "patch_embed3":
            t4 = out
    decoder_levels = (("decoder1", t4, "dblock1", "dnorm3"), ("decoder2", t3, "dblock2", "dnorm4"))
    for dec, skip, blk, norm in decoder_levels:
        out = _up(_conv_pair(out, sd, dec)) + skip
        h, w = out.shape[-2:]
        tokens = _ln(_kan_block(out.flatten(2).transpose(1, 2), sd, f"{blk}.0", h, w), sd, norm)
        out = _tokens_to_map(tokens, h, w)
    out = _up(_conv_pair(out, sd, "decoder3")) + t2
    out = _up(_conv_pair(out, sd, "decoder4")) + t1
    out = _up(_conv_pair(out, sd, "decoder5"))
    return F.conv2d(out, sd["final.weight"], sd["final.bias"])


def _input(dtype=torch.float64, shape=(2, 3, 64, 32)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _run(model, x):
    with torch.no_grad():
        return model(x)


# --------------------------------------------------------------------------------------- tests


def test_reference_basis_is_a_partition_of_unity():
    """Sanity of the test's own B-splines: they sum to 1 inside the grid and vanish far outside."""
    knots = (torch.arange(-3, 9, dtype=torch.float64) * 0.4 - 1.0).expand(2, -1)
    x = torch.tensor([[-0.99, 0.3], [0.5, 0.999], [5.0, -7.0]], dtype=torch.float64)
    basis = _bspline_basis(x, knots, 3)
    assert basis.shape == (3, 2, 8)
    torch.testing.assert_close(basis[:2].sum(-1), torch.ones(2, 2, dtype=torch.float64))
    assert not basis[2].any()


@pytest.mark.parametrize("jitter", [False, True], ids=["uniform_knots", "per_input_knots"])
def test_kan_checkpoint_matches_reference_float64(jitter):
    sd = _ukan_state_dict(jitter_knots=jitter, num_classes=2)
    model = from_ukan(sd)
    assert isinstance(model, KANUNet) and not model.training
    assert next(model.parameters()).dtype == torch.float64
    x = _input()
    expected = ukan_reference(sd, x)
    torch.testing.assert_close(_run(model, x), expected, rtol=1e-9, atol=1e-10)
    assert expected.shape == (2, 2, 64, 32) and expected.std() > 0.1  # a non-degenerate output


def test_no_kan_checkpoint_matches_reference():
    sd = _ukan_state_dict(no_kan=True, seed=3)
    model = from_ukan(sd)
    assert model.config.token_layer == "linear"
    x = _input()
    torch.testing.assert_close(_run(model, x), ukan_reference(sd, x), rtol=1e-9, atol=1e-10)


def test_float32_checkpoint_with_other_grid_and_order():
    sd = _ukan_state_dict((24, 16, 40), grid_size=3, spline_order=2, in_ch=1, dtype=torch.float32, seed=5)
    model = from_ukan(sd)
    kw = model.config.layer_kwargs
    assert (kw["grid_size"], kw["spline_order"], kw["grid_range"]) == (3, 2, [-1.0, 1.0])
    assert model.config.in_chans == 1
    x = _input(torch.float32, (1, 1, 32, 64))
    torch.testing.assert_close(_run(model, x), ukan_reference(sd, x), rtol=1e-4, atol=1e-5)


def test_inferred_layout_is_the_registered_ukan_model():
    dims = (16, 24, 32)
    model = from_ukan(_ukan_state_dict(dims))
    cfg = model.config
    assert cfg.variant == "ukan" and cfg.token_layer == "kan"
    assert (cfg.conv_channels, cfg.token_dims) == ([2, 4, 16], [24, 32])
    assert ukan_layout(dims) == {"conv_channels": cfg.conv_channels, "token_dims": cfg.token_dims}
    registered = zoo.create_model("kan_unet_ukan_tiny", embed_dims=list(dims))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in registered.state_dict().items()}
    twin = zoo.create_model("unet_ukan_tiny", embed_dims=list(dims))
    no_kan = from_ukan(_ukan_state_dict(dims, no_kan=True))
    assert {k: v.shape for k, v in no_kan.state_dict().items()} == {
        k: v.shape for k, v in twin.state_dict().items()
    }


def test_default_size_has_ukans_parameter_count():
    """U-KAN's default embed_dims [256, 320, 512]: same tensors, 25.36M parameters (the paper's count)."""
    sd = _ukan_state_dict((256, 320, 512), dtype=torch.float32)
    n_params = sum(
        v.numel()
        for k, v in sd.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked", ".grid"))
    )
    model = zoo.create_model("kan_unet_ukan_base")
    assert model.num_parameters() == n_params
    assert round(n_params / 1e6, 2) == 25.36
    assert sorted(from_ukan(sd).state_dict()) == sorted(model.state_dict())


@pytest.mark.slow
def test_default_size_matches_reference_at_256():
    sd = _ukan_state_dict((256, 320, 512), num_classes=1, dtype=torch.float32, seed=7)
    x = _input(torch.float32, (1, 3, 256, 256))
    torch.testing.assert_close(_run(from_ukan(sd), x), ukan_reference(sd, x), rtol=1e-4, atol=1e-4)


def test_wrappers_and_prefixes():
    sd = _ukan_state_dict(seed=2)
    x = _input()
    expected = ukan_reference(sd, x)
    wrapped = [
        {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}},
        {"model_state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "optimizer": {}},
    ]
    for source in wrapped:
        torch.testing.assert_close(_run(from_ukan(source), x), expected, rtol=1e-9, atol=1e-10)


def test_loads_pth_and_safetensors_files(tmp_path):
    from safetensors.torch import save_file

    sd = _ukan_state_dict(seed=4)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "model.pth")  # DataParallel
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    x = _input()
    expected = ukan_reference(sd, x)
    for name in ("model.pth", "model.safetensors"):
        torch.testing.assert_close(_run(from_ukan(tmp_path / name), x), expected, rtol=1e-9, atol=1e-10)
    assert sorted(load_ukan_state_dict(str(tmp_path / "model.pth"))) == sorted(sd)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        from_ukan(tmp_path / "absent.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pth")  # a whole pickled module
    with pytest.raises(ValueError, match="weights_only"):
        from_ukan(tmp_path / "pickled.pth")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ValueError, match="safetensors"):
        from_ukan(tmp_path / "model.txt")


def test_bad_keys_shapes_and_options_are_named():
    sd = _ukan_state_dict()
    missing = {k: v for k, v in sd.items() if k != "dblock2.0.layer.fc2.spline_scaler"}
    with pytest.raises(ValueError, match=r"missing keys \(1\): dblock2\.0\.layer\.fc2\.spline_scaler"):
        from_ukan(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \(2\): aux\.bias, aux\.weight"):
        from_ukan({**sd, "aux.weight": torch.zeros(2), "aux.bias": torch.zeros(2)})
    wrong = {**sd, "decoder2.conv.3.weight": torch.zeros(16, 24, 1, 1, dtype=torch.float64)}
    shape_error = r"shape mismatches \(1\): decoder2\.conv\.3\.weight: checkpoint \(16, 24, 1, 1\)"
    with pytest.raises(ValueError, match=shape_error):
        from_ukan(wrong)
    with pytest.raises(ValueError, match=r"num_classes=3 but the checkpoint has 1"):
        from_ukan(sd, num_classes=3)
    with pytest.raises(ValueError, match=r"input_channels=1 but the checkpoint has 3"):
        from_ukan(sd, input_channels=1)
    with pytest.raises(ValueError, match=r"no_kan=True but the checkpoint has False"):
        from_ukan(sd, no_kan=True)
    with pytest.raises(ValueError, match="not tensors"):
        from_ukan({**sd, "note": "hello"})
    with pytest.raises(ValueError, match="found no tensors"):
        from_ukan({"config": {"arch": "UKAN"}})
    no_arch = {k: v for k, v in sd.items() if not k.startswith("patch_embed4")}
    with pytest.raises(ValueError, match="missing key 'patch_embed4.proj.weight'"):
        from_ukan(no_arch)
    # explicit options that agree are accepted
    assert from_ukan(sd, num_classes=1, input_channels=3, no_kan=False).config.num_classes == 1


def test_save_pretrained_round_trip(tmp_path):
    sd = _ukan_state_dict(jitter_knots=True, dtype=torch.float32, seed=6)
    model = from_ukan(sd)
    x = _input(torch.float32)
    model.save_pretrained(tmp_path / "ukan")
    loaded = zoo.from_pretrained(tmp_path / "ukan")
    assert type(loaded) is KANUNet and loaded.config.variant == "ukan"
    # the non-uniform knots travel with the weights: same outputs, still U-KAN's
    assert torch.equal(_run(loaded, x), _run(model, x))
    torch.testing.assert_close(_run(loaded, x), ukan_reference(sd, x), rtol=1e-4, atol=1e-5)


def test_evaluate_scores_an_imported_checkpoint(tmp_path):
    from kanzoo.eval.runner import evaluate

    sd = _ukan_state_dict(dtype=torch.float32, seed=8)
    from_ukan(sd).save_pretrained(tmp_path / "ukan")
    data = {"name": "shapes", "image_size": 64, "num_train": 8, "num_val": 4, "num_test": 0}
    result = evaluate(
        str(tmp_path / "ukan"),
        data,
        output_dir=tmp_path / "eval",
        progress=False,
        num_overlays=0,
        compute_hd95=False,
        device="cpu",
    )
    metrics = result["results"][0]["metrics"]
    assert metrics["num_samples"] == 4
    assert 0.0 <= metrics["iou"] <= 1.0 and 0.0 <= metrics["dice"] <= 1.0
    assert (tmp_path / "eval" / "metrics.json").is_file()
