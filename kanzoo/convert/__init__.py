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
"""

from .efficient_kan import from_efficient_kan
from .kan_gpt import from_kan_gpt
from .kat import from_kat, load_kat_state_dict
from .networks import from_efficient_kan_network, from_pykan_network
from .pykan import from_pykan
from .ukan import from_ukan, load_ukan_state_dict

__all__ = [
    "from_efficient_kan",
    "from_efficient_kan_network",
    "from_kan_gpt",
    "from_kat",
    "from_pykan",
    "from_pykan_network",
    "from_ukan",
    "load_kat_state_dict",
    "load_ukan_state_dict",
]
