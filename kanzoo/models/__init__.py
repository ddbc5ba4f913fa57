"""kanzoo model zoo: a registry of KAN models and their MLP/CNN twins.

``create_model(name, **overrides)``, ``list_models(pattern)``, ``model_info(name)``,
``from_pretrained(path_or_name)``, ``list_pretrained()``.

Importing this package (explicitly, through any ``kanzoo.models.*`` module, or through the first use
of ``kanzoo.create_model`` and the other registry names on ``kanzoo``) imports every family module
listed below. Each registers its models with kanzoo's registry on import; ``_timm`` registers the
classifiers with ``timm.create_model`` and ``kan_gpt`` registers KAN-GPT with transformers'
``AutoConfig``/``AutoModelForCausalLM``. Needs the ``[models]`` extra (timm, torchvision,
transformers, safetensors). The other names below are imported on first use. Under
``python -m kanzoo.models`` the families are imported by ``__main__`` only when its cached table is
stale (:func:`import_families`).
"""

import sys as _sys

from kanzoo._extras import require_extra as _require_extra
from kanzoo._lazy import import_module as _import_module
from kanzoo._lazy import lazy_package as _lazy_package

# Family modules, one line each: importing one registers its models. Add a family here.
FAMILY_MODULES = (
    "conv_kan",
    "kan_fit",
    "kan_gpt",
    "kan_pinn",
    "kan_tsf",
    "kan_unet",
    "kan_vit",
    "_timm",  # timm.create_model names for the classifier families (after the families it wraps)
)

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "CheckpointMismatchError": "._base",
    "KanzooConfig": "._base",
    "KanzooModel": "._base",
    "count_parameters": "._base",
    "create_model": "._registry",
    "from_pretrained": "._registry",
    "is_model": "._registry",
    "list_families": "._registry",
    "list_models": "._registry",
    "list_pretrained": "._registry",
    "model_info": "._registry",
    "pretrained_dir": "._registry",
    "register_alias": "._registry",
    "register_family": "._registry",
    "register_model": "._registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)



def import_families() -> None:
    """Import every module of :data:`FAMILY_MODULES` (registering their models); idempotent."""
    _require_extra("models", needed_by=__name__)
    for family in FAMILY_MODULES:
        _import_module(f"{__name__}.{family}")  # a missing package names its extra


def _running_model_table() -> bool:
    """Whether this process is ``python -m kanzoo.models`` and Python is importing this package
    before running ``__main__`` (which prints a cached table without any family, and imports them
    itself when the cache is stale)."""
    argv = list(getattr(_sys, "orig_argv", ()))
    ran = any(
        a == "-mkanzoo.models" or (a == "-m" and argv[i + 1 : i + 2] == ["kanzoo.models"])
        for i, a in enumerate(argv)
    )
    return ran and _sys.argv[:1] == ["-m"]


if not _running_model_table():
    import_families()
