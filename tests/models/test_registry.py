"""Registry, checkpoint format and width matching."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import kanzoo.models as zoo
from kanzoo.models import _base, _registry
from kanzoo.models._base import CheckpointMismatchError, KanzooConfig, KanzooModel, match_width


@pytest.fixture
def clean_registry(monkeypatch):
    """Register throwaway models without leaking them into other tests."""
    for attr in ("_ENTRYPOINTS", "_METADATA", "_ALIASES", "_FAMILIES"):
        monkeypatch.setattr(_registry, attr, dict(getattr(_registry, attr)))
    return _registry


@dataclasses.dataclass
class ToyConfig(KanzooConfig):
    width: int = 4
    layer_kwargs: dict = dataclasses.field(default_factory=dict)


class Toy(nn.Module, KanzooModel):
    config_class = ToyConfig
    kanzoo_model = "toy"

    def __init__(self, config=None, **overrides):
        super().__init__()
        self.config = self._make_config(config, overrides)
        self.fc = nn.Linear(3, self.config.width)
        self.register_buffer("scale", torch.ones(self.config.width))

    def forward(self, x):
        return self.fc(x) * self.scale


# -- registration, lookup ---------------------------------------------------------------------


def test_register_bare_and_with_metadata(clean_registry):
    @zoo.register_model
    def toy_bare(**kw):
        return Toy(**kw)

    @zoo.register_model(task="classification", default_data="digits", aliases=("toy",))
    def toy_tiny(**kw):
        return Toy(**kw)

    @zoo.register_model(task="classification", twin_of="toy_tiny")
    def toy_twin_tiny(**kw):
        return Toy(**kw)

    assert {"toy_bare", "toy_tiny", "toy_twin_tiny"} <= set(zoo.list_models())
    assert zoo.list_models("toy_t*") == ["toy_tiny", "toy_twin_tiny"]
    assert "toy" not in zoo.list_models("toy*") and "toy" in zoo.list_models("toy*", include_aliases=True)
    info = zoo.model_info("toy")
    assert info["name"] == "toy_tiny" and info["alias_of"] == "toy_tiny"
    assert info["task"] == "classification" and info["default_data"] == "digits"
    assert info["twin"] == "toy_twin_tiny" and info["matched_twin"] is None
    assert zoo.model_info("toy_twin_tiny")["twin_of"] == "toy_tiny"
    assert zoo.model_info("toy_bare")["task"] is None
    model = zoo.create_model("toy", width=7)
    assert isinstance(model, Toy) and model.fc.out_features == 7


def test_register_rejects_bad_task_and_alias_clash(clean_registry):
    with pytest.raises(ValueError, match="task must be one of"):
        zoo.register_model(task="detection")
    with pytest.raises(ValueError, match="already a registered model"):
        zoo.register_alias("conv_kan_tiny", "cnn_tiny")
    with pytest.raises(ValueError, match="not a registered model"):
        zoo.register_alias("whatever", "no_such_model")


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="Unknown model 'kan_vit_tiyn'") as err:
        zoo.create_model("kan_vit_tiyn")
    assert "Did you mean: kan_vit_tiny" in str(err.value)
    with pytest.raises(ValueError, match="Unknown model"):
        zoo.model_info("nothing_like_it_at_all_xyz")


def test_list_models_filters_and_info_fields():
    assert zoo.list_models() == sorted(zoo.list_models())
    for name in zoo.list_models(task="segmentation"):
        assert zoo.model_info(name)["task"] == "segmentation"
    assert set(zoo.list_models("*unet*")) == set(zoo.list_models(task="segmentation"))
    assert zoo.list_models(family="kan_vit") == sorted(n for n in zoo.list_models("kan_vit*"))
    assert zoo.model_info("kan_unet")["name"] == "kan_unet_tiny"
    assert zoo.model_info("conv_kan_tiny")["default_data"] == "digits"
    assert zoo.model_info("kan_unet_tiny")["default_data"] == "shapes"
    assert "nuclei" in zoo.model_info("unet_tiny")["data"]
    assert zoo.model_info("conv_kan_tiny")["twin"] == "cnn_tiny"
    assert zoo.model_info("conv_kan_tiny")["matched_twin"] == "cnn_tiny_matched"
    for base in ("conv_kan", "cnn", "kan_unet", "unet", "kan_vit", "vit"):
        assert zoo.is_model(base)


def test_config_overrides_and_unknown_fields():
    model = zoo.create_model("cnn_tiny", num_classes=3, in_chans=1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="no field.*did you mean 'num_classes'"):
        zoo.create_model("cnn_tiny", num_clases=3)


def test_config_must_be_json_values():
    with pytest.raises(TypeError, match="JSON-serializable"):
        ToyConfig(layer_kwargs={"basis": nn.Linear})
    cfg = ToyConfig(layer_kwargs={"grid_range": (-2.0, 2.0)})
    assert json.loads(cfg.to_json_string())["layer_kwargs"] == {"grid_range": [-2.0, 2.0]}
    assert ToyConfig.from_dict(cfg.to_dict()) == ToyConfig(layer_kwargs={"grid_range": [-2.0, 2.0]})


# -- checkpoints ------------------------------------------------------------------------------


def _saved_toy(tmp_path, clean_registry, **kw):
    zoo.register_family("toy", Toy)
    torch.manual_seed(0)
    model = Toy(**kw)
    model.save_pretrained(tmp_path)
    return model


def test_save_pretrained_format(tmp_path, clean_registry):
    model = _saved_toy(tmp_path, clean_registry, width=5)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kanzoo_model"] == "toy" and config["width"] == 5
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert set(tensors) == set(model.state_dict())
    loaded = zoo.from_pretrained(str(tmp_path))
    x = torch.randn(4, 3)
    assert torch.equal(loaded(x), model(x)) and not loaded.training


def test_missing_unexpected_and_shape_errors_name_the_keys(tmp_path, clean_registry):
    _saved_toy(tmp_path, clean_registry)
    path = tmp_path / "model.safetensors"
    good = load_file(str(path))

    save_file({k: v for k, v in good.items() if k != "fc.bias"}, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): fc\.bias"):
        zoo.from_pretrained(tmp_path)

    save_file({**good, "extra.weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\): extra\.weight"):
        zoo.from_pretrained(tmp_path)

    save_file({**good, "fc.weight": torch.zeros(9, 3)}, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"fc\.weight: checkpoint \(9, 3\) vs model \(4, 3\)"):
        zoo.from_pretrained(tmp_path)
    # non-strict loading tolerates missing keys but never a shape mismatch
    with pytest.raises(CheckpointMismatchError, match="fc.weight"):
        Toy.from_pretrained(tmp_path, strict=False)


def test_loading_into_the_wrong_architecture(tmp_path):
    torch.manual_seed(0)
    zoo.create_model("cnn_tiny").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'conv_kan' model"):
        type(zoo.create_model("kan_vit_tiny")).from_pretrained(tmp_path)
    # same family, different widths: the mismatch names the parameters
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        type(zoo.create_model("cnn_tiny")).from_pretrained(tmp_path, base_width=8)
    # the KAN model saved in a twin's directory does not fit: KAN parameter names are listed
    kan_dir = tmp_path / "kan"
    zoo.create_model("conv_kan_tiny").save_pretrained(kan_dir)
    config = json.loads((kan_dir / "config.json").read_text())
    config["conv_layer"] = "conv"
    (kan_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="spline_weight"):
        zoo.from_pretrained(kan_dir)


def test_from_pretrained_errors(tmp_path, clean_registry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="is a file"):
        (tmp_path / "weights.safetensors").write_bytes(b"")
        zoo.from_pretrained(tmp_path / "weights.safetensors")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        zoo.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="No checkpoint 'runs/a/b/final'"):
        zoo.from_pretrained("runs/a/b/final")
    with pytest.raises(FileNotFoundError, match=r"use create_model\('kan_vit_tiny'\)"):
        zoo.from_pretrained("kan_vit_tiny")
    with pytest.raises(OSError, match="'someone/kan-model-that-does-not-exist'.*HF_HUB_OFFLINE"):
        zoo.from_pretrained("someone/kan-model-that-does-not-exist")
    (tmp_path / "config.json").write_text(json.dumps({"kanzoo_model": "mystery"}))
    with pytest.raises(ValueError, match="no kanzoo family 'mystery'"):
        zoo.from_pretrained(tmp_path)


def test_shipped_checkpoints(tmp_path, clean_registry, monkeypatch):
    monkeypatch.setattr(_registry, "_PRETRAINED_ROOT", tmp_path)
    assert zoo.list_pretrained() == []
    model = _saved_toy(tmp_path / "toy_digits", clean_registry)
    (tmp_path / "not_a_checkpoint").mkdir()
    assert zoo.list_pretrained() == ["toy_digits"]
    loaded = zoo.from_pretrained("toy_digits")
    x = torch.randn(2, 3)
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(FileNotFoundError, match="Closest shipped checkpoints: toy_digits"):
        zoo.from_pretrained("toy_digit")


# -- width matching ---------------------------------------------------------------------------


def _brute_force(count, target, low, high):
    return min(range(low, high + 1), key=lambda w: (abs(count(w) - target), w))


@pytest.mark.parametrize("seed", range(5))
def test_match_width_equals_brute_force(seed):
    rng = random.Random(seed)
    a, b, c = rng.randint(0, 40), rng.randint(1, 500), rng.randint(0, 10_000)
    target = rng.randint(20_000, 400_000)

    def quadratic(w):
        return a * w * w + b * w + c

    def staircase(w):  # monotone but not quadratic: exercises the binary-search fallback
        return quadratic(w) + 5_000 * (w // 7)

    for count in (quadratic, staircase):
        best = _brute_force(count, target, 1, 2_000)
        if abs(count(best) - target) <= 0.05 * target:
            got = match_width(count, target, low=1, high=2_000)
            assert abs(count(got) - target) == abs(count(best) - target)


def test_match_width_reports_unreachable_targets():
    with pytest.raises(ValueError, match="within 5%"):
        match_width(lambda w: 1000 * w, 1_500, low=1, high=10)
    with pytest.raises(ValueError, match="within 5%"):
        match_width(lambda w: w, 10**9, low=1, high=100)


def test_match_width_builds_each_candidate_once():
    calls = []

    def count(w):
        calls.append(w)
        return 3 * w * w + 5 * w

    match_width(count, 30_000, low=1, high=10_000)
    assert len(calls) == len(set(calls)) and len(calls) <= 6


def test_parameter_count_of_counts_shared_once():
    shared = nn.Linear(4, 4)
    assert _base.parameter_count_of(lambda: nn.Sequential(shared, shared)) == 20


# -- model table --------------------------------------------------------------------------------


def test_model_table_flops_match_an_analytic_count(capsys):
    from kanzoo.models.__main__ import main, model_row

    model = zoo.create_model("cnn_tiny").eval()
    shapes = {}

    def remember(module, _inputs, output):
        shapes[module] = output.shape

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(remember)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    expected = 0
    for m, shape in shapes.items():
        if isinstance(m, nn.Conv2d):  # 2 FLOPs per multiply-add, per output element
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            expected += 2 * k * shape.numel()
        else:
            expected += 2 * m.in_features * m.out_features
    row = model_row("cnn_tiny")
    assert row["flops"] == expected
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["task"] == "classification" and row["twin_of"] == "conv_kan_tiny"

    assert main(["cnn_tiny*", "--markdown"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| model | task") and len(out) == 2 + len(zoo.list_models("cnn_tiny*"))
    assert main(["no_such_model_*"]) == 1


@pytest.mark.parametrize("name", ["kan_gpt_nano", "conv_kan_tiny"])
def test_float64_checkpoint_reloads_its_exact_knots(name, tmp_path):
    """Knot buffers are float32 by design; a float64 checkpoint must not come back rounded."""
    import torch

    from kanzoo.layers import KANLinear

    torch.manual_seed(0)
    kwargs = {"vocab_size": 11, "n_positions": 8} if "gpt" in name else {"num_classes": 3, "in_chans": 1}
    model = zoo.create_model(name, **kwargs).double().eval()
    with torch.no_grad():
        for module in model.modules():
            grid = getattr(getattr(module, "basis", None), "grid", None)
            if isinstance(module, KANLinear) or grid is not None:
                if grid is not None:  # a non-uniform grid that float32 cannot hold exactly
                    grid.add_(1e-9 * torch.rand_like(grid))
    model.save_pretrained(tmp_path)
    again = zoo.from_pretrained(tmp_path).eval()
    ours, theirs = dict(model.named_buffers()), dict(again.named_buffers())
    grids = [k for k in ours if k.endswith("grid")]
    assert grids and all(theirs[k].dtype == torch.float64 and torch.equal(theirs[k], ours[k]) for k in grids)
    x = torch.randint(0, 11, (2, 8)) if "gpt" in name else torch.randn(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        a = model(input_ids=x).logits if "gpt" in name else model(x)
        b = again(input_ids=x).logits if "gpt" in name else again(x)
    assert torch.equal(a, b)
