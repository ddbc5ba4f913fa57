"""Bases of the KAN layers: ``x[..., in] -> features[..., in, n]``, one file each + a registry.

Adding a basis: subclass :class:`Basis` in a new file, decorate it with
``@register_basis("name")`` and import the file here.
"""

from .base import Basis, BasisFunctional, get_basis, list_bases, register_basis
from .bspline import BSplineBasis
from .chebyshev import ChebyshevBasis
from .fourier import FourierBasis
from .rational import RationalBasis
from .rbf import RBFBasis

__all__ = [
    "BSplineBasis",
    "Basis",
    "BasisFunctional",
    "ChebyshevBasis",
    "FourierBasis",
    "RBFBasis",
    "RationalBasis",
    "get_basis",
    "list_bases",
    "register_basis",
]
