"""Small KAN networks (stacks of KANLinear layers, as in the KAN paper) and input capture helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from kanzoo.interpret.edges import capture_inputs, is_kan_linear


class KANNetwork(nn.Sequential):
    """A plain stack of KANLinear layers of widths ``[d0, d1, ..., dL]`` (e.g. ``[2, 5, 1]``).

    The KAN paper's networks: no normalisation, no residuals, node j of layer l+1 is
    ``Σ_i φ_ji(x_i) + b_j``. Being an ``nn.Sequential``, its layers are ``net[0] ... net[L-1]``;
    :func:`kanzoo.interpret.prune` removes hidden neurons between them and
    :func:`kanzoo.interpret.to_sympy` turns a fully symbolified network into a formula.

    Args:
        widths: layer widths, input first; at least two entries, all positive.
        **layer_kwargs: forwarded to every ``kanzoo.layers.KANLinear`` (``grid_size``, ``basis``,
            ``base_activation``, ``grid_range`` ...).
    """

    def __init__(self, *, widths: Sequence[int], **layer_kwargs: Any) -> None:
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs >= 2 positive entries, got {widths}")
        from kanzoo.layers import KANLinear

        super().__init__(*(KANLinear(a, b, **layer_kwargs) for a, b in zip(widths[:-1], widths[1:])))

    @property
    def widths(self) -> list[int]:
        """Current widths (they shrink after pruning)."""
        return kan_widths(self)


def kan_widths(model: nn.Module) -> list[int]:
    """Widths of a stack of KAN layers: ``[in_0, out_0, out_1, ...]``."""
    layers = kan_stack(model)
    return [layers[0].spline_weight.shape[1]] + [layer.spline_weight.shape[0] for layer in layers]


def kan_stack(model: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    """The chained KANLinear layers of a small KAN (KANNetwork, nn.Sequential, list, or one layer)."""
    if is_kan_linear(model):
        return [model]
    layers = list(model) if isinstance(model, (nn.Sequential, nn.ModuleList, list, tuple)) else None
    if not layers or not all(is_kan_linear(m) for m in layers):
        raise ValueError(
            "expected a small KAN: a KANLinear, or an nn.Sequential/ModuleList/list made only of KANLinear "
            f"layers; got {type(model).__name__}"
        )
    for a, b in zip(layers[:-1], layers[1:]):
        if a.spline_weight.shape[0] != b.spline_weight.shape[1]:
            raise ValueError(
                f"consecutive layers do not chain: {a.spline_weight.shape[0]} outputs feed "
                f"{b.spline_weight.shape[1]} inputs"
            )
    return layers


def call_model(model: nn.Module, x: Any) -> Any:
    """``model(x)`` for a tensor, ``model(*x)`` for a tuple/list, ``model(**x)`` for a mapping."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def stack_inputs(layers: Sequence[nn.Module], x: Tensor | None, *, num: int = 512) -> list[Tensor]:
    """Inputs (M, C) reaching every layer of a stack; over the first layer's grid range when ``x`` is None."""
    from kanzoo.interpret.edges import grid_samples

    if x is None:
        x = grid_samples(layers[0], num)
    mods = {str(i): m for i, m in enumerate(layers)}

    def run():
        h = x
        for m in layers:
            h = m(h)

    caps = capture_inputs(mods, run, max_samples=1 << 30)
    return [caps[str(i)] for i in range(len(layers))]


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (what ``prune`` shrinks)."""
    return sum(p.numel() for p in model.parameters())
