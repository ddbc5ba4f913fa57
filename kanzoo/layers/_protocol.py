"""What every KAN layer is: the one "is this a KAN layer" predicate and the shared base class.

``KANLinear`` and ``KANConvNd`` derive from :class:`KANLayer`; code elsewhere (optimiser groups,
initialisation, grid updates, interpretability) asks :func:`is_kan_layer` instead of testing
class names, attribute names or parameter-name substrings.
"""

from __future__ import annotations

from torch import nn

__all__ = ["KANLayer", "is_kan_layer"]


class KANLayer(nn.Module):
    """Base class of the KAN layers (``KANLinear``, ``KANConv{1,2,3}d``).

    A KAN layer owns a ``basis`` (``kanzoo.layers.bases.Basis``), a ``spline_weight`` with the basis
    axis, optionally a ``base_weight`` (``base_activation`` branch), a ``spline_scaler`` and a
    ``bias``.
    """


def is_kan_layer(module: object) -> bool:
    """Whether ``module`` is a KAN layer (an instance of :class:`KANLayer`)."""
    return isinstance(module, KANLayer)
