"""Optional dependencies: which ``pip install 'kanzoo[extra]'`` provides which package.

The core install (``pip install kanzoo``) is what the KAN layers need: torch and numpy. Everything
else comes with an extra (the table below mirrors ``[project.optional-dependencies]`` in
``pyproject.toml``; a test keeps the two in step). When a part of kanzoo needs a package that is not
installed, :class:`MissingExtraError` says, in one line, which extra to install.

This module imports only the standard library.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "import_extra", "missing_extra_error", "require_extra"]

#: Extra -> the import names it provides (each an installable distribution, see ``DISTRIBUTIONS``).
EXTRAS: dict[str, tuple[str, ...]] = {
    "models": ("timm", "torchvision", "transformers", "safetensors", "huggingface_hub"),
    "train": (
        "accelerate",
        "datasets",
        "tokenizers",
        "hydra",
        "omegaconf",
        "tqdm",
        "matplotlib",
        "sklearn",
        "PIL",
        "tifffile",
    ),
    "eval": ("scipy", "sympy"),
    "interpret": ("sympy", "scipy", "matplotlib"),
    "wandb": ("wandb",),
    "timeseries": ("statsmodels", "pandas"),
}

#: Import name -> distribution name where they differ.
DISTRIBUTIONS: dict[str, str] = {
    "hydra": "hydra-core",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "huggingface_hub": "huggingface-hub",
}

#: The extra each kanzoo subpackage needs (the first one named in an error about that subpackage).
SUBPACKAGE_EXTRA: dict[str, str] = {
    "kanzoo.models": "models",
    "kanzoo.data": "train",
    "kanzoo.train": "train",
    "kanzoo.eval": "eval",
    "kanzoo.convert": "models",
    "kanzoo.interpret": "interpret",
    "kanzoo.viz": "interpret",
}


class MissingExtraError(ModuleNotFoundError, ValueError):
    """A package of a kanzoo extra is not installed; the one-line message names the extra.

    It is a ``ModuleNotFoundError`` (``except ImportError`` still catches it) and a ``ValueError``
    (entry points print it as one ``error:`` line instead of a traceback).
    """


def _extra_for(module: str, needed_by: str | None) -> str | None:
    top = module.partition(".")[0]
    preferred = None
    if needed_by:
        for prefix, extra in SUBPACKAGE_EXTRA.items():
            if needed_by == prefix or needed_by.startswith(prefix + "."):
                preferred = extra
                break
    if preferred is not None and top in _closure(preferred):
        return preferred
    return next((extra for extra, names in EXTRAS.items() if top in names), None)


def _closure(extra: str) -> set[str]:
    """Import names an extra provides, including the extras it builds on (as in pyproject.toml)."""
    names = set(EXTRAS.get(extra, ()))
    for base in _INCLUDES.get(extra, ()):
        names |= _closure(base)
    return names


# Extras that include others (``eval = ["kanzoo[train]", ...]`` in pyproject.toml).
_INCLUDES: dict[str, tuple[str, ...]] = {"train": ("models",), "eval": ("train",)}


def _message(missing: list[str], extra: str, needed_by: str | None) -> str:
    what = needed_by or "this part of kanzoo"
    names = ", ".join(DISTRIBUTIONS.get(m, m) for m in missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"{what} needs {names}, which {verb} not installed; install it with: pip install 'kanzoo[{extra}]'"


def missing_extra_error(
    err: ModuleNotFoundError, *, needed_by: str | None = None
) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for ``err`` if the missing module belongs to an extra, else None."""
    if isinstance(err, MissingExtraError) or not err.name:
        return None
    extra = _extra_for(err.name, needed_by)
    if extra is None:
        return None
    top = err.name.partition(".")[0]
    return MissingExtraError(_message([top], extra, needed_by), name=top)


def require_extra(extra: str, *, needed_by: str | None = None) -> None:
    """Raise :class:`MissingExtraError` listing every package of ``extra`` that is not installed.

    Looks the packages up without importing them (``importlib.util.find_spec``).
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown kanzoo extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    missing = [name for name in sorted(_closure(extra)) if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(_message(missing, extra, needed_by), name=missing[0])


def import_extra(module: str, *, needed_by: str | None = None):
    """``importlib.import_module(module)``; if it is missing, a one-line error naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        better = missing_extra_error(err, needed_by=needed_by)
        if better is None:
            raise
        raise better from err
