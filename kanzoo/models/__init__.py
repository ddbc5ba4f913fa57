"""kanzoo model zoo: a registry of KAN models and their MLP/CNN twins.

``create_model(name, **overrides)``, ``list_models(pattern)``, ``model_info(name)``,
``from_pretrained(path_or_name)``, ``list_pretrained()``; families register themselves on import.
"""

# Family modules register their models on import (and _timm registers the classifiers with timm).
from kanzoo.models import _timm, conv_kan, kan_fit, kan_gpt, kan_pinn, kan_tsf, kan_unet, kan_vit  # noqa: F401
from kanzoo.models._base import CheckpointMismatchError, KanzooConfig, KanzooModel, count_parameters
from kanzoo.models._registry import (
    create_model,
    from_pretrained,
    is_model,
    list_families,
    list_models,
    list_pretrained,
    model_info,
    pretrained_dir,
    register_alias,
    register_family,
    register_model,
)

__all__ = [
    "CheckpointMismatchError",
    "KanzooConfig",
    "KanzooModel",
    "count_parameters",
    "create_model",
    "from_pretrained",
    "is_model",
    "list_families",
    "list_models",
    "list_pretrained",
    "model_info",
    "pretrained_dir",
    "register_alias",
    "register_family",
    "register_model",
]
