"""The small fully connected network behind the scientific families (``kan_fit``, ``kan_pinn``).

A stack of layers built by ``kanzoo.layers.get_linear_layer(config.layer)`` with a node activation
between consecutive layers::

    x -> layers[0] -> acts[0] -> layers[1] -> acts[1] -> ... -> layers[-1] -> y

The KAN models use ``layer="kan"`` and ``act="identity"`` (a KAN layer carries its nonlinearity on
its edges, as in the KAN paper's ``[d, h, 1]`` networks); their MLP twins use ``layer="linear"`` with
a real node activation. Both are set explicitly by the registered constructors, never inferred from
the layer spec. ``layers`` is an ``nn.Sequential`` of the layers alone, so for a KAN model it is a
"small KAN" in the sense of :mod:`kanzoo.interpret` (``prune``, ``auto_symbolic``, ``to_sympy``).

Grid extension (pykan's ``refine``): ``grid_schedule = [[step, grid_size], ...]`` asks for every
B-spline KAN layer to be refined to ``grid_size`` intervals once training reaches ``step``. The
trainer calls the task's ``on_step`` hook, which calls :meth:`CoordNet.apply_grid_schedule`; the
refinement keeps every edge function (knot insertion) and replaces ``spline_weight`` by a larger
parameter, which the task swaps into the optimizer. The config's ``layer_kwargs["grid_size"]``
follows the refinement, so a saved checkpoint rebuilds at its current grid.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from kanzoo.layers import get_linear_layer, is_kan_layer
from kanzoo.models._base import KanzooConfig, KanzooModel, make_activation, matched_width

__all__ = ["CoordNet", "CoordNetConfig", "build_matched"]


@dataclasses.dataclass
class CoordNetConfig(KanzooConfig):
    """Configuration of a :class:`CoordNet` (shared by ``kan_fit`` and ``kan_pinn``).

    Args:
        in_features: Input dimension (formula variables; PDE coordinates).
        out_features: Output dimension.
        hidden: Widths of the hidden layers, e.g. ``[5]`` for the KAN paper's ``[2, 5, 1]``.
        layer: Layer spec for ``get_linear_layer``: ``"kan"`` (B-spline KAN), ``"linear"`` (the
            MLP twin), ``"kan_rbf"``, ``"kan_chebyshev"``, ...
        layer_kwargs: Extra layer options, e.g. ``{"grid_size": 5}`` for B-spline KAN layers.
        act: Node activation between layers: ``"identity"`` (KAN models), ``"silu"``, ``"tanh"``,
            ``"gelu"``, ``"relu"`` (MLP twins).
        grid_schedule: ``[[step, grid_size], ...]``: refine every B-spline layer to ``grid_size``
            intervals when training reaches ``step`` (pykan-style grid extension). Grids only
            grow; entries at or below the current grid are skipped. Empty: no extension. Ignored
            by models without B-spline KAN layers.
    """

    in_features: int = 2
    out_features: int = 1
    hidden: list[int] = dataclasses.field(default_factory=lambda: [5])
    layer: str = "kan"
    layer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    act: str = "identity"
    grid_schedule: list[list[int]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {self.in_features}, {self.out_features}"
            )
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        steps = []
        for entry in self.grid_schedule:
            if not isinstance(entry, list | tuple) or len(entry) != 2 or min(int(v) for v in entry) < 1:
                raise ValueError(
                    f"grid_schedule entries must be [step, grid_size] pairs of positive integers, "
                    f"got {entry!r}"
                )
            steps.append(int(entry[0]))
        if steps != sorted(steps):
            raise ValueError(f"grid_schedule steps must be increasing, got {self.grid_schedule}")
        self.grid_schedule = [[int(s), int(g)] for s, g in self.grid_schedule]
        make_activation(self.act)  # validates the name


class CoordNet(nn.Module, KanzooModel):
    """Fully connected network of factory-built layers with node activations in between.

    Subclasses set ``config_class`` and ``kanzoo_model`` (the family key).

    Forward: ``x (..., in_features) -> (..., out_features)``.
    """

    config_class = CoordNetConfig
    kanzoo_model = ""

    def __init__(self, config: CoordNetConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        linear = get_linear_layer(cfg.layer, **cfg.layer_kwargs)
        widths = [cfg.in_features, *cfg.hidden, cfg.out_features]
        self.layers = nn.Sequential(*(linear(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.acts = nn.ModuleList(make_activation(cfg.act) for _ in widths[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.acts[i](x)
        return x

    # -- grid extension ----------------------------------------------------------------------
    def kan_layers(self) -> list[nn.Module]:
        """The KAN layers of the network (empty for an MLP twin)."""
        return [m for m in self.layers if is_kan_layer(m)]

    def grid_size(self) -> int | None:
        """Current number of grid intervals of the B-spline layers (None without any)."""
        sizes = {int(m.basis.grid_size) for m in self.kan_layers() if hasattr(m.basis, "spline_order")}
        return sizes.pop() if len(sizes) == 1 else (max(sizes) if sizes else None)

    @torch.no_grad()
    def refine_grid(self, new_grid_size: int) -> dict[nn.Parameter, nn.Parameter]:
        """Refine every B-spline KAN layer to ``new_grid_size`` intervals (edge functions kept).

        Returns:
            ``{old_parameter: new_parameter}`` for every parameter that was replaced (swap them
            into an optimizer, see ``kanzoo.train.tasks_science``).
        """
        before = dict(self.named_parameters())
        for layer in self.kan_layers():
            if hasattr(layer.basis, "spline_order"):
                layer.refine_grid(int(new_grid_size))
        if self.grid_size() is not None:
            self.config = self.config.replace(
                layer_kwargs={**self.config.layer_kwargs, "grid_size": int(new_grid_size)}
            )
        after = dict(self.named_parameters())
        return {before[n]: p for n, p in after.items() if before.get(n) is not p}

    def apply_grid_schedule(self, step: int) -> dict[nn.Parameter, nn.Parameter]:
        """Refine to the largest scheduled grid whose step has been reached (no-op otherwise).

        Idempotent: calling it again for the same or an earlier step changes nothing, so a run
        resumed at step ``s`` gets the grid it had at ``s`` by calling it once with ``s``.
        """
        current = self.grid_size()
        if current is None:
            return {}
        target = max((g for s, g in self.config.grid_schedule if step >= s), default=current)
        return self.refine_grid(target) if target > current else {}


def build_matched(
    cls: type[CoordNet],
    key: str,
    base: dict[str, Any],
    overrides: dict[str, Any],
    *,
    twin: dict[str, Any],
) -> CoordNet:
    """The MLP twin of ``cls(**base, **overrides)`` with every hidden width set to one searched value
    so that its parameter count is within 5% of the KAN model's.

    Args:
        cls: The family class.
        key: Cache key (the twin's registered name).
        base: The KAN model's size (``hidden``, layer spec, ...).
        overrides: User overrides; KAN-only options (``layer_kwargs``, ``layer``, ``act``) shape the
            target but not the twin.
        twin: The twin's own settings (``layer="linear"``, its ``act``).
    """
    rest = {k: v for k, v in overrides.items() if k != "hidden"}
    hidden = list(overrides.get("hidden", base["hidden"]))
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "layer", "act", "grid_schedule")}

    def make_twin(width: int) -> CoordNet:
        return cls(cls.config_class.from_dict({**base, **twin_rest, **twin, "hidden": [width] * len(hidden)}))

    width = matched_width(
        key,
        overrides,
        target=lambda: cls(cls.config_class.from_dict({**base, **rest, "hidden": hidden})),
        twin=make_twin,
        low=1,
        high=4096,
    )
    return make_twin(width)
