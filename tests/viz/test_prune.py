"""Pruning really shrinks KAN layers and keeps the outputs on the data."""

import math

import pytest
import torch
from torch import nn

from kanzoo.interpret import (
    KANNetwork,
    count_parameters,
    edge_importance,
    edge_set,
    neuron_importance,
    prune,
    slice_kan_linear,
)
from kanzoo.layers import KANLinear


def _kan_params(widths, n=8):
    """Parameter count of a bspline KANNetwork (G=5, k=3): o·i·(base + n spline + scaler) + o bias."""
    return sum(o * i * (n + 2) + o for i, o in zip(widths[:-1], widths[1:]))


def test_slice_keeps_the_kept_edges():
    layer = KANLinear(4, 5)
    with torch.no_grad():
        layer.spline_weight.normal_()
    small = slice_kan_linear(layer, torch.tensor([0, 2, 3]), torch.tensor([1, 4]))
    assert (small.in_features, small.out_features) == (3, 2)
    assert small.basis.grid.shape[0] == 3 and small.basis.in_features == 3
    x = torch.rand(50, 4) * 2 - 1
    full = edge_set(layer).evaluate(x).reshape(50, 5, 4)[:, [1, 4]][:, :, [0, 2, 3]]
    part = edge_set(small).evaluate(x[:, [0, 2, 3]]).reshape(50, 2, 3)
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(small(x[:, [0, 2, 3]]), full.sum(-1) + layer.bias[[1, 4]])


def test_dead_neuron_is_removed_and_its_constant_folded_exactly():
    """A hidden neuron with no incoming edges is the constant b_h; removing it and folding
    φ_jh(b_h) into the next bias leaves the outputs unchanged."""
    net = KANNetwork(widths=[3, 4, 2])
    with torch.no_grad():
        net[0].spline_weight[2] = 0
        net[0].base_weight[2] = 0
        net[0].bias[2] = 0.7
    x = torch.rand(300, 3) * 2 - 1
    before = net(x)
    ((s_in, s_out),) = neuron_importance(net, x).values()
    assert float(s_in[2]) == 0 and bool((s_in[[0, 1, 3]] > 0).all())
    torch.testing.assert_close(s_out, edge_importance(net[1], net[0](x)).amax(0))
    report = prune(net, 1e-9, x)
    assert report.removed_neurons == {"0->1": [2]}
    assert net.widths == [3, 3, 2]
    assert isinstance(net[0], KANLinear) and net[0].out_features == 3 and net[1].in_features == 3
    assert report.params_after == count_parameters(net) == _kan_params([3, 3, 2])
    assert report.params_before == _kan_params([3, 4, 2])
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-5)


def test_weak_edges_are_zeroed_and_mean_folded():
    net = KANNetwork(widths=[2, 2, 1])
    with torch.no_grad():
        net[0].spline_weight[1, 0] *= 1e-4
        net[0].base_weight[1, 0] *= 1e-4
    x = torch.rand(200, 2) * 2 - 1
    scores = prune(net, 0.0, x, neurons=False, edges=False).edge_scores["0"]  # dry run: scores only
    threshold = float(scores[1, 0]) * 2
    assert threshold < float(scores.flatten().sort().values[1])  # only this edge is below it
    before = net(x)
    report = prune(net, threshold, x, neurons=False)
    assert report.zeroed_edges["0"] == 1
    assert float(net[0].spline_weight[1, 0].detach().abs().sum()) == 0
    assert float(net[0].base_weight[1, 0].detach()) == 0
    assert net.widths == [2, 2, 1]
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-3)


def test_pairs_in_a_general_model_with_activation_between():
    class FFN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = KANLinear(4, 6), nn.GELU(), KANLinear(6, 3)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    model = FFN()
    with torch.no_grad():
        model.fc2.spline_weight[:, 5] = 0
        model.fc2.base_weight[:, 5] = 0
    x = torch.randn(7, 11, 4)
    before = model(x)
    report = prune(model, 1e-9, x, pairs=[("fc1", "fc2")], edges=False)
    assert report.removed_neurons["fc1->fc2"] == [5]
    assert (model.fc1.out_features, model.fc2.in_features) == (5, 5)
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="not a KANLinear"):
        prune(model, 0.1, x, pairs=[("fc1", "act")])


def _fit_sparse_kan(x, y, widths, *, steps=300, lam=1e-2):
    net = KANNetwork(widths=widths)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(steps):
        opt.zero_grad()
        hidden = net[0](x)
        loss = ((net[1](hidden) - y) ** 2).mean()
        reg = net[0].regularization_loss(x) + net[1].regularization_loss(hidden)
        (loss + lam * reg).backward()
        opt.step()
    return net


def test_trained_small_kan_prunes_unused_input_and_neurons():
    """3-5-1 KAN fitted (with the KAN-paper sparsity penalty) to sin(pi x0) + x1^2, x2 unused:
    pruning removes hidden neurons and the x2 edges, the model shrinks and still fits the data."""
    torch.manual_seed(0)
    x = torch.rand(256, 3) * 2 - 1
    y = (torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)[:, None]
    net = _fit_sparse_kan(x, y, [3, 5, 1])
    with torch.no_grad():
        before = net(x)
    rmse_before = float(((before - y) ** 2).mean().sqrt())
    assert rmse_before < 0.05
    params_before = count_parameters(net)
    report = prune(net, 0.02, x)
    with torch.no_grad():
        after = net(x)
        x_flip = x.clone()
        x_flip[:, 2] = -x_flip[:, 2]
        # x2 no longer matters: its edges were zeroed or their neurons removed.
        torch.testing.assert_close(net(x_flip), after)
    assert net.widths[0] == 3 and net.widths[1] < 5
    assert report.params_after == count_parameters(net) == _kan_params(net.widths) < params_before
    assert float(((after - before) ** 2).mean().sqrt()) < 0.02
    assert float(((after - y) ** 2).mean().sqrt()) < rmse_before + 0.02
