"""KAN layers: ``KANLinear``, ``KANConv{1,2,3}d``, pluggable bases and layer factories.

See ``kanzoo/layers/_fused.py`` for the memory-lean, optionally compiled training path and
``set_compile`` / ``KANZOO_COMPILE=0`` to turn compilation off.

Names are imported on first use (PEP 562); this package needs only torch (the core install).
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Public name -> module that defines it (imported on first use). One line per name.
_EXPORTS = {
    "compile_enabled": "._fused",
    "set_compile": "._fused",
    "KANLayer": "._protocol",
    "is_kan_layer": "._protocol",
    "Basis": ".bases",
    "get_basis": ".bases",
    "list_bases": ".bases",
    "register_basis": ".bases",
    "get_conv_layer": ".factory",
    "get_linear_layer": ".factory",
    "list_layer_specs": ".factory",
    "KANConv1d": ".kan_conv",
    "KANConv2d": ".kan_conv",
    "KANConv3d": ".kan_conv",
    "KANConvNd": ".kan_conv",
    "KANLinear": ".kan_linear",
    "freed_memory_kept": ".memory",
    "keep_freed_memory": ".memory",
    "ROLES": ".roles",
    "kan_parameter_names": ".roles",
    "parameter_roles": ".roles",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
