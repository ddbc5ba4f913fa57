"""Look inside KAN models: edge importance, pruning and symbolic regression of edge functions.

* :mod:`kanzoo.interpret.edges` evaluates and scores the learned edge functions φ of any KAN layer.
* :func:`prune` removes weak neurons (really shrinking the layers) and zeroes weak edges.
* :func:`suggest_edge` / :func:`symbolify` / :func:`auto_symbolic` / :func:`to_sympy` turn edges into
  formulas ``c·f(a·x+b)+d`` that stay trainable, and a small KAN into a sympy expression.

Plots live in :mod:`kanzoo.viz`.

Names are imported on first use (PEP 562); the symbolic part needs the ``[interpret]`` extra (sympy).
"""

from kanzoo._lazy import lazy_package as _lazy_package

# ``prune`` is both a submodule and a function: import the function now, so that a later
# ``import kanzoo.interpret.prune`` elsewhere cannot leave the module in its place (prune.py needs
# only torch).
from kanzoo.interpret.prune import prune  # noqa: F401  (in __all__ below)

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "EdgeSet": ".edges",
    "capture_inputs": ".edges",
    "channel_knots": ".edges",
    "channel_ranges": ".edges",
    "edge_importance": ".edges",
    "edge_set": ".edges",
    "is_kan_conv": ".edges",
    "is_kan_layer": ".edges",
    "is_kan_linear": ".edges",
    "kan_modules": ".edges",
    "SYMBOLIC_LIBRARY": ".library",
    "Candidate": ".library",
    "SymbolicFit": ".library",
    "fit_candidate": ".library",
    "register_symbolic": ".library",
    "select_fit": ".library",
    "suggest_symbolic": ".library",
    "KANNetwork": ".network",
    "count_parameters": ".network",
    "kan_stack": ".network",
    "kan_widths": ".network",
    "stack_inputs": ".network",
    "PruneReport": ".prune",
    "neuron_importance": ".prune",
    "slice_kan_linear": ".prune",
    "SymbolicKANLinear": ".symbolic",
    "auto_symbolic": ".symbolic",
    "edge_samples": ".symbolic",
    "make_symbolic": ".symbolic",
    "suggest_edge": ".symbolic",
    "symbolify": ".symbolic",
    "to_sympy": ".symbolic",
}

__all__ = sorted([*_EXPORTS, "prune"])

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
