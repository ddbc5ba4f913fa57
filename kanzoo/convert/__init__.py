"""Importers from other KAN implementations and peer checkpoints into kanzoo.

Layers, into :class:`kanzoo.layers.KANLinear` with the same outputs (knots per input, uniform or not,
and the spline's zero value beyond the outermost knots):

* :func:`from_pykan`: a ``kan.KANLayer`` object of the pykan package (``pip install pykan``).
* :func:`from_efficient_kan`: the ``state_dict`` of an efficient-kan ``KANLinear``.

Whole networks: :func:`from_pykan_network` (a pykan ``KAN``, node scales and biases folded into the
layers) and :func:`from_efficient_kan_network` (the ``state_dict`` of an efficient-kan ``KAN``) return
an ``nn.Sequential`` of ``KANLinear`` with the same outputs.

Peer checkpoints, into registered kanzoo models with the same outputs (``save_pretrained`` them, or
use ``python -m kanzoo.convert <kind> <file> <out_dir>``):

* :func:`from_kan_gpt`: kan-gpt's efficient-kan GPT state dicts -> ``KanGPTForCausalLM``.
* :func:`from_ukan`: U-KAN's ``model.pth`` -> ``KANUNet`` with ``variant="ukan"``.
* :func:`from_kat`: KAT's timm weights (``kat_tiny/small/base``) -> ``KANViT``.

Names are imported on first use (PEP 562): the layer importers need only the core install, the
checkpoint importers the ``[models]`` extra.
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "from_efficient_kan": ".efficient_kan",
    "from_kan_gpt": ".kan_gpt",
    "from_kat": ".kat",
    "load_kat_state_dict": ".kat",
    "from_efficient_kan_network": ".networks",
    "from_pykan_network": ".networks",
    "from_pykan": ".pykan",
    "from_ukan": ".ukan",
    "load_ukan_state_dict": ".ukan",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
