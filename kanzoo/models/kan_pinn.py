"""KAN-PINN: physics-informed KANs that solve PDEs, as in the KAN paper's Poisson example.

The network maps coordinates to the solution, ``u = net(x)`` with ``x = (x, y)`` or ``(x, t)``
(see :mod:`kanzoo.models._coord_net`). It is trained without any solution data: the loss is the
squared PDE residual at collocation points, computed by autograd through the network (second
derivatives flow through the KAN layers: their fused backward is itself differentiable), plus the
squared boundary/initial-condition error. The problems, their exact solutions and residuals are
defined in :mod:`kanzoo.data.science` (``poisson``: ``-Δu = 2π² sin(πx) sin(πy)`` on ``[-1, 1]²``;
``heat``: ``u_t = α u_xx`` with ``u = exp(-απ²t) sin(πx)``); the loss is
:class:`kanzoo.train.tasks_science.PDE`.

The twin (``pinn_*``) is the same network with ``nn.Linear`` layers and tanh node activations (the
usual PINN MLP); ``pinn_*_matched`` widens it to the KAN model's parameter count (within 5%).
Grid extension works as for ``kan_fit`` (``grid_schedule``).

Forward: ``x (B, in_features) -> u (B, 1)``.
"""

from __future__ import annotations

from typing import Any

from kanzoo.models._coord_net import CoordNet, CoordNetConfig, build_matched
from kanzoo.models._registry import register_family, register_model

__all__ = ["KANPINN", "KANPINNConfig"]


class KANPINNConfig(CoordNetConfig):
    """Configuration of :class:`KANPINN` (fields: see :class:`kanzoo.models._coord_net.CoordNetConfig`)."""


class KANPINN(CoordNet):
    """Physics-informed KAN (or MLP-twin) ``coordinates (B, d) -> u (B, 1)``.

    Args:
        config: A :class:`KANPINNConfig` (or dict); defaults when omitted.
        **overrides: Config fields to override.
    """

    config_class = KANPINNConfig
    kanzoo_model = "kan_pinn"


register_family("kan_pinn", KANPINN)

# ------------------------------------------------------------------------------------------------
# Registered sizes: ``tiny`` is the KAN paper's Poisson network [2, 10, 1]; ``small`` [2, 16, 16, 1].
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=[10]),
    "small": dict(hidden=[16, 16]),
}
_KAN = dict(layer="kan", act="identity")
_TWIN = dict(layer="linear", act="tanh", layer_kwargs={})
_META = dict(task="pde", default_data="poisson", input_size=(2,))


def _build(size: str, spec: dict[str, Any], overrides: dict[str, Any]) -> KANPINN:
    return KANPINN(KANPINNConfig.from_dict({**_SIZES[size], **spec, **overrides}))


def _matched(size: str, overrides: dict[str, Any]) -> KANPINN:
    return build_matched(KANPINN, f"pinn_{size}_matched", {**_SIZES[size], **_KAN}, overrides, twin=_TWIN)


@register_model(family="kan_pinn", aliases=("kan_pinn",), **_META)
def kan_pinn_tiny(**overrides: Any) -> KANPINN:
    """KAN-PINN tiny: a [2, 10, 1] B-spline KAN (G=5, cubic), the KAN paper's Poisson network."""
    return _build("tiny", _KAN, overrides)


@register_model(family="kan_pinn", **_META)
def kan_pinn_small(**overrides: Any) -> KANPINN:
    """KAN-PINN small: a [2, 16, 16, 1] B-spline KAN."""
    return _build("small", _KAN, overrides)


@register_model(family="pinn", twin_of="kan_pinn_tiny", aliases=("pinn",), **_META)
def pinn_tiny(**overrides: Any) -> KANPINN:
    """PINN twin of kan_pinn_tiny: the same [2, 10, 1] widths with nn.Linear layers and tanh."""
    return _build("tiny", _TWIN, overrides)


@register_model(family="pinn", twin_of="kan_pinn_small", **_META)
def pinn_small(**overrides: Any) -> KANPINN:
    """PINN twin of kan_pinn_small."""
    return _build("small", _TWIN, overrides)


@register_model(family="pinn", twin_of="kan_pinn_tiny", **_META)
def pinn_tiny_matched(**overrides: Any) -> KANPINN:
    """PINN twin of kan_pinn_tiny widened to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="pinn", twin_of="kan_pinn_small", **_META)
def pinn_small_matched(**overrides: Any) -> KANPINN:
    """PINN twin of kan_pinn_small widened to within 5% of its parameters."""
    return _matched("small", overrides)
