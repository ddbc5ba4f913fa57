"""PEP 562 lazy exports for kanzoo's package ``__init__`` files.

A package lists its public names and the module that defines each; nothing is imported until a
name is first used (``kanzoo.create_model``, ``from kanzoo.layers import KANLinear``). The value is
then stored in the package namespace, so later lookups are ordinary attribute reads.

A missing optional dependency found while importing becomes :class:`kanzoo._extras.MissingExtraError`
naming the extra to install. This module imports only the standard library.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_package"]


def lazy_package(
    package: str,
    exports: Mapping[str, str],
    *,
    submodules: Iterable[str] = (),
    before: Mapping[str, Callable[[], None]] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names load on first access.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> module defining it, relative to the package (``".kan_linear"``) or
            absolute (``"kanzoo.models"``); ``"module:attr"`` exports ``attr`` under another name.
        submodules: Subpackages reachable as attributes (``kanzoo.models``), imported on access. Any
            other submodule (``kanzoo.layers.grid``) is imported on attribute access too.
        before: Public name -> a function called before that name is first resolved (e.g. one
            that imports the modules which register datasets before ``build_data`` is handed out).

    Returns:
        The module-level ``__getattr__`` and ``__dir__`` to assign in the package ``__init__``.
    """
    namespace = sys.modules[package].__dict__
    exports = dict(exports)
    submodules = tuple(submodules)
    hooks = dict(before or {})
    clash = sorted(set(exports) & set(submodules))
    if clash:
        raise ValueError(f"{package}: names both exported and listed as submodules: {clash}")

    def __getattr__(name: str) -> Any:
        if name in exports:
            hook = hooks.get(name)
            if hook is not None:
                hook()
            module_name, _, attr = exports[name].partition(":")
            module = import_module(module_name, package)
            value = getattr(module, attr or name)
            namespace[name] = value
            return value
        if name in submodules or (not name.startswith("__") and _is_submodule(package, name)):
            return import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules) | set(_submodule_names(package)))

    return __getattr__, __dir__


def _submodule_names(package: str) -> list[str]:
    path = getattr(sys.modules[package], "__path__", None)
    return [m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("__")] if path else []


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module file or subpackage (found without importing it)."""
    return name in _submodule_names(package)


def import_module(name: str, package: str | None = None) -> Any:
    """``importlib.import_module``; a missing optional dependency names the kanzoo extra to install."""
    try:
        return importlib.import_module(name, package)
    except ModuleNotFoundError as err:
        from kanzoo._extras import missing_extra_error

        better = missing_extra_error(err, needed_by=importlib.util.resolve_name(name, package))
        if better is None:
            raise
        raise better from err
