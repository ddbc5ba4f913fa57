"""Pruning KAN layers by the importance of their edges and neurons (mean |φ| on data).

* An edge ``φ_ji`` scores ``mean |φ_ji(x_i)|`` over the data reaching its layer.
* A hidden neuron ``h`` between two chained KANLinear layers ``a -> b`` scores
  ``in = max_i score_a[h, i]`` and ``out = max_j score_b[j, h]``; it is removed when either is below
  the threshold. Removal really shrinks the network: ``a`` loses output row ``h`` and ``b`` loses input
  column ``h`` (new, smaller KANLinear modules replace them), so the model gets smaller and faster.
* Removed contributions are not just dropped: the mean of what they added on the data, ``mean φ_jh``,
  is folded into the bias of ``b`` (the best constant stand-in in the least-squares sense).
* Edges below the threshold that survive neuron removal are zeroed in place (a dense layer cannot skip a
  single edge) and their mean is folded into the bias the same way.

Chains are the consecutive KANLinear children of every ``nn.Sequential`` in the model (a KANNetwork is
one), plus any ``pairs=[("block.fc1", "block.fc2")]`` given explicitly (valid when what sits between the
two layers acts channel by channel, e.g. an activation or dropout).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from kanzoo.interpret.edges import capture_inputs, edge_set, is_kan_linear
from kanzoo.interpret.network import call_model, count_parameters


@dataclass
class PruneReport:
    """What :func:`prune` did.

    Attributes:
        removed_neurons: per chained pair ``"a->b"``, the indices (in the original numbering) of the
            hidden neurons removed.
        zeroed_edges: per layer name, the number of edges set to zero.
        params_before: parameter elements before pruning.
        params_after: parameter elements after pruning.
        edge_scores: per layer name, the (out, in) mean |φ| scores used (original numbering).
    """

    removed_neurons: dict[str, list[int]] = field(default_factory=dict)
    zeroed_edges: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    edge_scores: dict[str, Tensor] = field(default_factory=dict)


def _chains(model: nn.Module, pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    names = {id(m): n for n, m in model.named_modules()}
    found = []
    for _, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod)
            for a, b in zip(kids[:-1], kids[1:]):
                if is_kan_linear(a) and is_kan_linear(b):
                    found.append((names[id(a)], names[id(b)]))
    modules = dict(model.named_modules())
    for a, b in pairs or []:
        for n in (a, b):
            if n not in modules or not is_kan_linear(modules[n]):
                raise ValueError(f"pair member {n!r} is not a KANLinear module of the model")
        if (a, b) not in found:
            found.append((a, b))
    for a, b in found:
        if modules[a].spline_weight.shape[0] != modules[b].spline_weight.shape[1]:
            raise ValueError(
                f"{a!r} has {modules[a].spline_weight.shape[0]} outputs but {b!r} takes "
                f"{modules[b].spline_weight.shape[1]} inputs"
            )
    return found


def _slice_basis(basis: nn.Module, keep: Tensor, n_in: int) -> None:
    """Keep input channels ``keep`` of a per-channel basis.

    Per-channel tables (tensors of >= 2 dims whose leading dim is ``n_in``, e.g. B-spline knots or RBF
    centres) are sliced; everything else (scalars, frequency vectors) is shared by all channels and kept.
    """
    if hasattr(basis, "group_index"):
        raise ValueError(
            f"cannot remove input channels of {type(basis).__name__}: its coefficients are shared by "
            "groups of channels; prune neurons only between layers with per-channel bases (e.g. bspline)"
        )
    for mod in basis.modules():
        for name, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if t is None or t.dim() < 2 or t.shape[0] != n_in:
                continue
            new = t.detach()[keep].clone()
            if isinstance(t, nn.Parameter):
                setattr(mod, name, nn.Parameter(new, requires_grad=t.requires_grad))
            else:
                mod.register_buffer(name, new, persistent=name not in mod._non_persistent_buffers_set)
        for attr in ("in_features", "in_channels", "num_channels"):
            if getattr(mod, attr, None) == n_in:
                setattr(mod, attr, len(keep))


def slice_kan_linear(
    layer: nn.Module, keep_in: Tensor | None = None, keep_out: Tensor | None = None
) -> nn.Module:
    """A new KANLinear keeping inputs ``keep_in`` and outputs ``keep_out`` (index tensors) of ``layer``."""
    out_f, in_f = layer.spline_weight.shape[:2]
    keep_in = torch.arange(in_f) if keep_in is None else torch.as_tensor(keep_in).long()
    keep_out = torch.arange(out_f) if keep_out is None else torch.as_tensor(keep_out).long()
    if len(keep_in) == 0 or len(keep_out) == 0:
        raise ValueError("pruning would leave a layer with no inputs or no outputs; lower the threshold")
    new = copy.deepcopy(layer)
    for name in ("base_weight", "spline_weight", "spline_scaler"):
        p = getattr(layer, name, None)
        if p is not None:
            setattr(
                new,
                name,
                nn.Parameter(p.detach()[keep_out][:, keep_in].clone(), requires_grad=p.requires_grad),
            )
    if getattr(layer, "bias", None) is not None:
        new.bias = nn.Parameter(layer.bias.detach()[keep_out].clone(), requires_grad=layer.bias.requires_grad)
    _slice_basis(new.basis, keep_in, in_f)
    new.in_features, new.out_features = len(keep_in), len(keep_out)
    return new


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential):
        parent[int(child)] = new
    else:
        setattr(parent, child, new)


@torch.no_grad()
def neuron_importance(
    model: nn.Module, x: Any, *, pairs: list[tuple[str, str]] | None = None, max_samples: int = 8192
) -> dict[str, tuple[Tensor, Tensor]]:
    """Scores of the hidden neurons between chained KANLinear layers (see :func:`prune`).

    Returns:
        ``{"a->b": (in_score, out_score)}``: for each hidden neuron ``h`` the strongest mean |φ| of
        an edge into it (from layer ``a``) and out of it (into layer ``b``).
    """
    modules = {n: m for n, m in model.named_modules() if is_kan_linear(m)}
    chains = _chains(model, pairs)
    used = {n for pair in chains for n in pair}
    inputs = capture_inputs(
        {n: modules[n] for n in used}, lambda: call_model(model, x), max_samples=max_samples
    )
    scores = {n: edge_set(modules[n]).mean_abs(inputs[n]) for n in used}
    return {f"{a}->{b}": (scores[a].amax(dim=1), scores[b].amax(dim=0)) for a, b in chains}


@torch.no_grad()
def prune(
    model: nn.Module,
    threshold: float,
    x: Any,
    *,
    neurons: bool = True,
    edges: bool = True,
    pairs: list[tuple[str, str]] | None = None,
    max_samples: int = 8192,
) -> PruneReport:
    """Remove hidden neurons and zero edges of ``model``'s KANLinear layers whose mean |φ| < ``threshold``.

    The model is modified in place (layers of chained pairs are replaced by smaller ones).

    Args:
        model: any model containing KANLinear layers; for a small KAN use a
            :class:`~kanzoo.interpret.KANNetwork` or an ``nn.Sequential`` of KANLinear layers.
        threshold: importance below which an edge (or a neuron's strongest in/out edge) is pruned;
            compare with ``report.edge_scores`` from a dry run (``neurons=False, edges=False``).
        x: a batch the model is run on to score the edges (a tensor, a tuple of positional inputs or a
            dict of keyword inputs).
        neurons: remove hidden neurons of chained pairs.
        edges: zero the remaining edges below the threshold.
        pairs: extra chained pairs ``(name_a, name_b)`` whose in-between acts per channel.
        max_samples: at most this many input rows per layer are used for scoring.

    Returns:
        A :class:`PruneReport`.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    modules = {n: m for n, m in model.named_modules() if is_kan_linear(m)}
    if not modules:
        raise ValueError(f"{type(model).__name__} has no KANLinear layers to prune")
    chains = _chains(model, pairs)
    report = PruneReport(params_before=count_parameters(model))
    inputs = capture_inputs(modules, lambda: call_model(model, x), max_samples=max_samples)
    sets = {n: edge_set(m) for n, m in modules.items()}
    scores = {n: sets[n].mean_abs(inputs[n]) for n in modules}
    report.edge_scores = scores

    keep_in = {n: torch.arange(m.spline_weight.shape[1]) for n, m in modules.items()}
    keep_out = {n: torch.arange(m.spline_weight.shape[0]) for n, m in modules.items()}
    bias_shift = {n: torch.zeros(m.spline_weight.shape[0]) for n, m in modules.items()}
    if neurons:
        for a, b in chains:
            s_in = scores[a].amax(dim=1)  # strongest edge into each hidden neuron
            s_out = scores[b].amax(dim=0)  # strongest edge out of it
            dead = ((s_in < threshold) | (s_out < threshold)).nonzero().flatten()
            if len(dead) == len(s_in):  # keep the single most important neuron rather than cut the path
                dead = dead[dead != torch.argmax(torch.minimum(s_in, s_out))]
            if len(dead):
                phi = sets[b].evaluate(inputs[b]).reshape(-1, *scores[b].shape)  # (M, out_b, in_b)
                bias_shift[b] += phi[:, :, dead].mean(0).sum(1)
            alive = torch.ones(len(s_in), dtype=torch.bool)
            alive[dead] = False
            keep_out[a] = keep_out[a][alive[keep_out[a]]]
            keep_in[b] = keep_in[b][alive[keep_in[b]]]
            report.removed_neurons[f"{a}->{b}"] = dead.tolist()

    for name, layer in modules.items():
        ki, ko = keep_in[name], keep_out[name]
        zero = torch.zeros(len(ko), len(ki), dtype=torch.bool)
        if edges:
            zero = scores[name][ko][:, ki] < threshold
        if zero.any():
            es = sets[name]
            phi = es.evaluate(inputs[name]).reshape(-1, *scores[name].shape)[:, ko][:, :, ki]
            bias_shift[name][ko] += (phi * zero).mean(0).sum(1)
        shrink = len(ki) < layer.spline_weight.shape[1] or len(ko) < layer.spline_weight.shape[0]
        new = slice_kan_linear(layer, ki, ko) if shrink else layer
        if zero.any():
            for pname in ("base_weight", "spline_weight"):
                p = getattr(new, pname, None)
                if p is not None:
                    p[zero] = 0.0
        shift = bias_shift[name][ko]
        if shift.abs().sum() > 0:
            if getattr(new, "bias", None) is None:  # a bias-free layer gets one to hold the folded means
                new.bias = nn.Parameter(torch.zeros(len(ko), dtype=new.spline_weight.dtype))
            new.bias += shift.to(new.bias)
        report.zeroed_edges[name] = int(zero.sum())
        if new is not layer:
            _set_module(model, name, new)
    report.params_after = count_parameters(model)
    return report
