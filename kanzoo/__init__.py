"""kanzoo: a PyTorch model zoo in which Kolmogorov-Arnold Network (KAN) layers replace the
feed-forward and convolution layers of well-known architectures.

Importing ``kanzoo`` registers every model family with the kanzoo registry, with timm
(``timm.create_model("kan_vit_tiny_patch16_224")``) and with transformers
(``AutoModelForCausalLM.from_pretrained(dir)`` for KAN-GPT checkpoints).

Entry points::

    kanzoo.create_model("kan_vit_tiny", num_classes=10)
    kanzoo.from_pretrained("runs/kan_gpt/final")        # local dir, shipped name or hub id
    kanzoo.kanify(model, include="*.mlp.*", preserve=True)
    kanzoo.layers.KANLinear(64, 64)                      # drop-in for nn.Linear
"""

from kanzoo import layers

# Registers the segmentation benchmarks (busi, glas, ...) with kanzoo.data.build_data, so that
# `train.py data=busi` works as well as `evaluate.py data=busi`.
from kanzoo.eval import benchmarks as _benchmarks  # noqa: E402,F401
from kanzoo.layers import (
    KANConv1d,
    KANConv2d,
    KANConv3d,
    KANLinear,
    get_basis,
    get_conv_layer,
    get_linear_layer,
    list_bases,
)
from kanzoo.layers.kanify import kanify
from kanzoo.models import (
    create_model,
    from_pretrained,
    list_models,
    list_pretrained,
    model_info,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "KANConv1d",
    "KANConv2d",
    "KANConv3d",
    "KANLinear",
    "__version__",
    "create_model",
    "from_pretrained",
    "get_basis",
    "get_conv_layer",
    "get_linear_layer",
    "kanify",
    "layers",
    "list_bases",
    "list_models",
    "list_pretrained",
    "model_info",
    "register_model",
]
