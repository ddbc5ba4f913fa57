"""Layer factories: one code path builds KAN layers and their MLP/CNN twins."""

import functools

import pytest
import torch
from torch import nn

from kanzoo.layers import KANConv1d, KANConv2d, KANConv3d, KANLinear, get_conv_layer, get_linear_layer


def test_linear_specs():
    assert type(get_linear_layer("linear")(4, 3)) is nn.Linear
    assert get_linear_layer("linear")(4, 3, bias=False).bias is None
    kan = get_linear_layer("kan", grid_size=8)(4, 3, bias=False)
    assert isinstance(kan, KANLinear) and kan.bias is None
    assert kan.basis.grid_size == 8 and type(kan.basis).__name__ == "BSplineBasis"
    assert type(get_linear_layer("kan", basis="rbf")(4, 3).basis).__name__ == "RBFBasis"
    gr = get_linear_layer("kan_rational")(16, 8)
    assert gr.base_weight is None and type(gr.basis).__name__ == "RationalBasis"
    assert get_linear_layer("kan_chebyshev", degree=2)(3, 3).basis.num_features == 3
    assert get_linear_layer(KANLinear, basis="fourier")(3, 2).basis.num_features == 10
    part = functools.partial(KANLinear, base_activation="identity")
    assert get_linear_layer(part)(3, 2).base_activation == "identity"
    with pytest.raises(ValueError, match="linear"):
        get_linear_layer("mlp")


def test_linear_twins_have_same_call_signature_and_shapes():
    x = torch.randn(2, 5, 6)
    for spec in ["linear", "kan", "kan_rbf", "kan_chebyshev", "kan_fourier", "kan_rational"]:
        layer = get_linear_layer(spec)(6, 4, bias=True)
        assert layer(x).shape == (2, 5, 4)


@pytest.mark.parametrize("dim,cls,kan_cls", [(1, nn.Conv1d, KANConv1d), (2, nn.Conv2d, KANConv2d),
                                             (3, nn.Conv3d, KANConv3d)])  # fmt: skip
def test_conv_specs(dim, cls, kan_cls):
    x = torch.randn(2, 4, *([7] * dim))
    kwargs = dict(stride=2, padding=1, dilation=1, groups=2, bias=False)
    plain = get_conv_layer("conv", dim=dim)(4, 6, 3, **kwargs)
    kan = get_conv_layer("kan", dim=dim, grid_size=3)(4, 6, 3, **kwargs)
    assert type(plain) is cls and type(kan) is kan_cls
    assert kan.bias is None and kan.basis.grid_size == 3
    assert kan(x).shape == plain(x).shape
    assert isinstance(get_conv_layer("kan_rational", dim=dim)(4, 4, 1), kan_cls)


def test_conv_spec_errors_and_callables():
    with pytest.raises(ValueError, match="dim"):
        get_conv_layer("conv", dim=4)
    with pytest.raises(ValueError, match="conv"):
        get_conv_layer("deform")
    layer = get_conv_layer(KANConv2d, basis="rbf")(2, 2, 3)
    assert type(layer.basis).__name__ == "RBFBasis"


def test_kan_parameter_names_identify_kan_parameters():
    model = nn.Sequential(get_linear_layer("kan")(4, 4), get_conv_layer("kan_rational", dim=1)(4, 4, 3))
    for name, _ in model.named_parameters():
        if not name.endswith("bias"):
            assert any(k in name for k in ("spline_weight", "spline_scaler", "base_weight", "basis."))
