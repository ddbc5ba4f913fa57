"""KAN-Fit: a small KAN regressor for data fitting, as in the KAN paper's formula fits.

A ``[d, h_1, ..., 1]`` network (see :mod:`kanzoo.models._coord_net`) trained on samples of a named
formula (``kanzoo.data`` ``feynman``: a subset of the Feynman equations the KAN paper fits, plus its
toy functions). Two things make it a KAN-paper model rather than just a small network:

* grid extension: ``grid_schedule=[[step, G], ...]`` refines the B-spline grids during training
  (coarse to fine, every edge function kept exactly by knot insertion), and
* symbolic export: :meth:`KANFit.symbolic_formula` snaps every edge to the best formula of
  :mod:`kanzoo.interpret`'s library (``auto_symbolic``) and returns sympy expressions (``to_sympy``).

The MLP twin (``mlp_fit_*``) is the same network with ``nn.Linear`` layers and SiLU node activations;
``mlp_fit_*_matched`` widens its hidden layers to the KAN model's parameter count (within 5%).

Forward: ``x (B, in_features) -> (B, out_features)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kanzoo.models._coord_net import CoordNet, CoordNetConfig, build_matched
from kanzoo.models._registry import register_family, register_model

__all__ = ["KANFit", "KANFitConfig"]


class KANFitConfig(CoordNetConfig):
    """Configuration of :class:`KANFit` (fields: see :class:`kanzoo.models._coord_net.CoordNetConfig`)."""


class KANFit(CoordNet):
    """KAN (or MLP-twin) regressor ``x (B, d) -> y (B, out)``.

    Args:
        config: A :class:`KANFitConfig` (or dict); defaults when omitted.
        **overrides: Config fields to override (``in_features=...``, ``hidden=[...]``).
    """

    config_class = KANFitConfig
    kanzoo_model = "kan_fit"

    def symbolic_formula(
        self,
        x: torch.Tensor,
        *,
        input_names: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        digits: int | None = 4,
    ) -> tuple[list[Any], nn.Module]:
        """Snap every edge to a library formula and export the network as sympy expressions.

        Works on a copy (this model is unchanged). Needs a pure KAN network: KAN layers and
        identity node activations.

        Args:
            x: Inputs the edges are fitted on, ``(N, in_features)`` (e.g. the training inputs).
            input_names: Symbol names of the inputs (default ``x_1 ... x_d``).
            candidates: Library function names to try (default: the whole library).
            digits: Significant digits of the exported coefficients.

        Returns:
            ``(expressions, symbolic_network)``: one sympy expression per output, and the
            symbolified copy of ``layers`` (an ``nn.Sequential``; call it on inputs to score the
            formula).

        Raises:
            ValueError: The network has non-KAN layers or non-identity node activations.
        """
        from kanzoo.interpret import auto_symbolic, to_sympy

        if len(self.kan_layers()) != len(self.layers) or not all(
            isinstance(a, nn.Identity) for a in self.acts
        ):
            raise ValueError(
                "symbolic_formula needs a pure KAN network (KAN layers, act='identity'); "
                f"this one has layer={self.config.layer!r}, act={self.config.act!r}"
            )
        net = copy.deepcopy(self.layers).eval()
        with torch.no_grad():
            auto_symbolic(net, x.detach().to(next(net.parameters()).dtype), candidates=candidates)
        return to_sympy(net, input_names=input_names, digits=digits), net


register_family("kan_fit", KANFit)

# ------------------------------------------------------------------------------------------------
# Registered sizes. ``tiny`` is the KAN paper's [d, 5, 1] shape; ``small`` is [d, 10, 10, 1].
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=[5]),
    "small": dict(hidden=[10, 10]),
}
_KAN = dict(layer="kan", act="identity")
_TWIN = dict(layer="linear", act="silu", layer_kwargs={})
_META = dict(task="regression", default_data="feynman", input_size=(2,))


def _build(size: str, spec: dict[str, Any], overrides: dict[str, Any]) -> KANFit:
    return KANFit(KANFitConfig.from_dict({**_SIZES[size], **spec, **overrides}))


def _matched(size: str, overrides: dict[str, Any]) -> KANFit:
    return build_matched(KANFit, f"mlp_fit_{size}_matched", {**_SIZES[size], **_KAN}, overrides, twin=_TWIN)


@register_model(family="kan_fit", aliases=("kan_fit",), **_META)
def kan_fit_tiny(**overrides: Any) -> KANFit:
    """KAN-Fit tiny: a [d, 5, 1] B-spline KAN (G=5, cubic), the KAN paper's formula-fitting shape."""
    return _build("tiny", _KAN, overrides)


@register_model(family="kan_fit", **_META)
def kan_fit_small(**overrides: Any) -> KANFit:
    """KAN-Fit small: a [d, 10, 10, 1] B-spline KAN."""
    return _build("small", _KAN, overrides)


@register_model(family="mlp_fit", twin_of="kan_fit_tiny", aliases=("mlp_fit",), **_META)
def mlp_fit_tiny(**overrides: Any) -> KANFit:
    """MLP twin of kan_fit_tiny: the same [d, 5, 1] widths with nn.Linear layers and SiLU."""
    return _build("tiny", _TWIN, overrides)


@register_model(family="mlp_fit", twin_of="kan_fit_small", **_META)
def mlp_fit_small(**overrides: Any) -> KANFit:
    """MLP twin of kan_fit_small."""
    return _build("small", _TWIN, overrides)


@register_model(family="mlp_fit", twin_of="kan_fit_tiny", **_META)
def mlp_fit_tiny_matched(**overrides: Any) -> KANFit:
    """MLP twin of kan_fit_tiny widened to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="mlp_fit", twin_of="kan_fit_small", **_META)
def mlp_fit_small_matched(**overrides: Any) -> KANFit:
    """MLP twin of kan_fit_small widened to within 5% of its parameters."""
    return _matched("small", overrides)
