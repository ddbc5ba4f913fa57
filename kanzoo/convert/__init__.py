"""Importers from other KAN implementations into :class:`kanzoo.layers.KANLinear`.

* :func:`from_pykan`: a ``kan.KANLayer`` object of the pykan package (``pip install pykan``).
* :func:`from_efficient_kan`: the ``state_dict`` of an efficient-kan ``KANLinear``.

Both return a ``KANLinear`` that computes the same outputs, including its knots (uniform or not,
per input) and the spline's zero value beyond the outermost knots.

Whole networks: :func:`from_pykan_network` (a pykan ``KAN``, node scales and biases folded into the
layers) and :func:`from_efficient_kan_network` (the ``state_dict`` of an efficient-kan ``KAN``) return
an ``nn.Sequential`` of ``KANLinear`` with the same outputs.
"""

from .efficient_kan import from_efficient_kan
from .networks import from_efficient_kan_network, from_pykan_network
from .pykan import from_pykan

__all__ = ["from_efficient_kan", "from_efficient_kan_network", "from_pykan", "from_pykan_network"]
