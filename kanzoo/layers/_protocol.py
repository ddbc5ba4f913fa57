"""What every KAN layer is: the one "is this a KAN layer" predicate and the shared base class.

``KANLinear`` and ``KANConvNd`` derive from :class:`KANLayer`; code elsewhere (optimiser groups,
initialisation, grid updates, interpretability) asks :func:`is_kan_layer` instead of testing
class names, attribute names or parameter-name substrings. The base class carries everything
that does not depend on the layer's shape: the parameter roles (read by the optimiser) and the
grid / regulariser / edge-function tools (implemented once, for linear and conv layers alike, in
:mod:`kanzoo.layers.grid`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KANLayer", "is_kan_layer"]


class KANLayer(nn.Module):
    """Base class of the KAN layers (``KANLinear``, ``KANConv{1,2,3}d``).

    A KAN layer owns a ``basis`` (``kanzoo.layers.bases.Basis``), a ``spline_weight`` with the basis
    axis, optionally a ``base_weight`` (``base_activation`` branch), a ``spline_scaler`` and a
    ``bias``. Its edge function is ``phi(x) = W_b act(x) + sum_f (W_s * s)_f B_f(x)``.
    """

    # -- parameter roles (kanzoo.layers.roles) ------------------------------------------------

    def parameter_roles(self) -> dict[str, str]:
        """Role of every parameter of this layer, by name relative to the layer.

        * ``base_weight``, ``spline_weight``: ``"weight"``. They are the layer's weight matrices:
          together they are the ``(out, in * (1 + n))`` matrix of one matmul (for GR-KAN the
          ``spline_weight`` is the whole FFN matrix), the counterpart of the twin's
          ``nn.Linear``/``nn.ConvNd`` weight, and are weight-decayed like it.
        * ``spline_scaler``: ``"gain"``. It multiplies the already decayed ``spline_weight``
          element by element (the effective weight is ``W_s * s``). Decaying both factors would
          shrink the effective weight twice as fast as the twin's weight; with only ``W_s``
          decayed, one decoupled-decay step scales every edge function by exactly the
          ``(1 - lr * wd)`` that scales the twin's linear map.
        * ``bias``: ``"bias"``.
        * basis parameters (``basis.<name>``): the basis' own roles, ``"coefficient"`` for
          every trainable basis parameter unless the basis says otherwise (see
          ``Basis.parameter_roles``), e.g. GR-KAN's rational ``numerator``/``denominator``.
        """
        roles = {
            name: role
            for name, role in (
                ("base_weight", "weight"),
                ("spline_weight", "weight"),
                ("spline_scaler", "gain"),
                ("bias", "bias"),
            )
            if getattr(self, name, None) is not None
        }
        basis = getattr(self, "basis", None)
        hook = getattr(basis, "parameter_roles", None)
        if callable(hook):
            roles.update({f"basis.{name}": role for name, role in hook().items()})
        return roles

    # -- grid and interpretability tools (implemented in kanzoo.layers.grid) ------------------

    def update_grid(self, x: torch.Tensor, *, grid_eps: float = 1.0, margin: float = 0.0) -> None:
        """Re-place the knots from data ``x`` and refit the spline so the function is preserved.

        ``x`` is a batch of layer inputs: ``(..., in)`` for a linear layer, ``(N, C, *spatial)``
        for a convolution (every value of channel ``c`` is a sample of input ``c``). See
        :func:`kanzoo.layers.grid.update_grid`.
        """
        from kanzoo.layers import grid

        return grid.update_grid(self, x, grid_eps=grid_eps, margin=margin)

    def refine_grid(self, new_grid_size: int) -> None:
        """Refine the grid to ``new_grid_size`` intervals (exact by knot insertion when possible).

        See :func:`kanzoo.layers.grid.refine_grid`.
        """
        from kanzoo.layers import grid

        return grid.refine_grid(self, new_grid_size)

    def regularization_loss(self, x: torch.Tensor, *, l1: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
        """KAN-paper sparsity regulariser (L1 of mean ``|phi_e|`` plus the entropy term).

        Edges are (output, input) pairs of a linear layer and (output, input-of-group, tap)
        triples of a convolution. See :func:`kanzoo.layers.grid.regularization_loss`.
        """
        from kanzoo.layers import grid

        return grid.regularization_loss(self, x, l1=l1, entropy=entropy)

    def edge_functions(self, x: torch.Tensor | None = None, *, num: int = 200):
        """Sampled edge functions ``phi_e`` for plotting: ``(xs (in, num), ys)``.

        ``ys`` is ``(out, in, num)`` for a linear layer and ``(out, in / groups, *kernel_size,
        num)`` for a convolution. See :func:`kanzoo.layers.grid.edge_functions`.
        """
        from kanzoo.layers import grid

        return grid.edge_functions(self, x, num=num)


def is_kan_layer(module: object) -> bool:
    """Whether ``module`` is a KAN layer (an instance of :class:`KANLayer`)."""
    return isinstance(module, KANLayer)
