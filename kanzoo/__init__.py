"""kanzoo: a PyTorch model zoo in which Kolmogorov-Arnold Network (KAN) layers replace the
feed-forward and convolution layers of well-known architectures.

Entry points::

    kanzoo.create_model("kan_vit_tiny", num_classes=10)
    kanzoo.from_pretrained("runs/kan_gpt/final")        # local dir, shipped name or hub id
    kanzoo.kanify(model, include="*.mlp.*", preserve=True)
    kanzoo.layers.KANLinear(64, 64)                      # drop-in for nn.Linear

Imports are lazy (PEP 562): ``import kanzoo`` loads nothing but this file, and a name is imported
when it is first used. ``from kanzoo.layers import KANLinear`` imports torch and the layer code only.

When models are registered (with kanzoo, timm and transformers): when :mod:`kanzoo.models` is
first imported. That happens on ``import kanzoo.models`` (or any ``kanzoo.models.*`` module), on the
first use of ``kanzoo.models`` or of one of the registry names here (``create_model``,
``from_pretrained``, ``list_models``, ``list_pretrained``, ``model_info``, ``register_model``), and
in every entry point that handles models (``train.py``, ``evaluate.py``, ``python -m kanzoo.convert``,
``python -m kanzoo.viz``; ``python -m kanzoo.models`` only when its cached table is stale).
Importing it registers every family with kanzoo's registry, the classifiers with
``timm.create_model`` and KAN-GPT with transformers' ``AutoConfig``/``AutoModelForCausalLM``.
``import kanzoo`` and ``kanzoo.layers`` alone register nothing and import neither timm nor transformers.

Datasets are registered with :func:`kanzoo.data.build_data` on its first use (or that of
``kanzoo.data.list_datasets``), including the segmentation benchmarks of :mod:`kanzoo.eval.benchmarks`.

The core install (``pip install kanzoo``) is torch + numpy, enough for :mod:`kanzoo.layers`; the other
parts need an extra (``[models]``, ``[train]``, ``[eval]``, ``[interpret]``, ``[wandb]``,
``[timeseries]``, ``[all]``) and say which one when it is missing.
"""

import logging as _logging

from kanzoo._lazy import lazy_package as _lazy_package

__version__ = "0.1.0"


class _DropCudaHomeNotice(_logging.Filter):
    """torch's inductor imports ``torch.utils.cpp_extension`` when it compiles on CPU, which logs
    ``No CUDA runtime is found, using CUDA_HOME=...`` on every CPU run of a machine with a CUDA
    toolkit. The CPU kernels need no CUDA runtime; nothing else is filtered."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


_logging.getLogger("torch.utils.cpp_extension").addFilter(_DropCudaHomeNotice())

# Public name -> module that defines it (imported on first use). One line per name.
_EXPORTS = {
    "KANConv1d": "kanzoo.layers",
    "KANConv2d": "kanzoo.layers",
    "KANConv3d": "kanzoo.layers",
    "KANLinear": "kanzoo.layers",
    "get_basis": "kanzoo.layers",
    "get_conv_layer": "kanzoo.layers",
    "get_linear_layer": "kanzoo.layers",
    "list_bases": "kanzoo.layers",
    "kanify": "kanzoo.layers.kanify",
    "create_model": "kanzoo.models",
    "from_pretrained": "kanzoo.models",
    "list_models": "kanzoo.models",
    "list_pretrained": "kanzoo.models",
    "model_info": "kanzoo.models",
    "register_model": "kanzoo.models",
}

# Subpackages reachable as attributes (``kanzoo.models.create_model``), imported on first use.
_SUBPACKAGES = ("convert", "data", "eval", "interpret", "layers", "models", "train", "viz")

__all__ = sorted([*_EXPORTS, "__version__", "layers"])

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS, submodules=_SUBPACKAGES)
