"""KAN layers: ``KANLinear``, ``KANConv{1,2,3}d``, pluggable bases and layer factories.

See ``kanzoo/layers/_fused.py`` for the memory-lean, optionally compiled training path and
``set_compile`` / ``KANZOO_COMPILE=0`` to turn compilation off.
"""

from ._fused import compile_enabled, set_compile
from ._protocol import KANLayer, is_kan_layer
from .bases import Basis, get_basis, list_bases, register_basis
from .factory import get_conv_layer, get_linear_layer, list_layer_specs
from .kan_conv import KANConv1d, KANConv2d, KANConv3d, KANConvNd
from .kan_linear import KANLinear
from .roles import ROLES, kan_parameter_names, parameter_roles

__all__ = [
    "ROLES",
    "Basis",
    "KANConv1d",
    "KANConv2d",
    "KANConv3d",
    "KANConvNd",
    "KANLayer",
    "KANLinear",
    "compile_enabled",
    "get_basis",
    "get_conv_layer",
    "get_linear_layer",
    "is_kan_layer",
    "kan_parameter_names",
    "list_bases",
    "list_layer_specs",
    "parameter_roles",
    "register_basis",
    "set_compile",
]
