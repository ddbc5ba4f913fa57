"""Look inside KAN models: edge importance, pruning and symbolic regression of edge functions.

* :mod:`kanzoo.interpret.edges` evaluates and scores the learned edge functions φ of any KAN layer.
* :func:`prune` removes weak neurons (really shrinking the layers) and zeroes weak edges.
* :func:`suggest_edge` / :func:`symbolify` / :func:`auto_symbolic` / :func:`to_sympy` turn edges into
  formulas ``c·f(a·x+b)+d`` that stay trainable, and a small KAN into a sympy expression.

Plots live in :mod:`kanzoo.viz`.
"""

from kanzoo.interpret.edges import (
    EdgeSet,
    capture_inputs,
    channel_knots,
    channel_ranges,
    edge_importance,
    edge_set,
    is_kan_conv,
    is_kan_layer,
    is_kan_linear,
    kan_modules,
)
from kanzoo.interpret.library import (
    SYMBOLIC_LIBRARY,
    Candidate,
    SymbolicFit,
    fit_candidate,
    register_symbolic,
    select_fit,
    suggest_symbolic,
)
from kanzoo.interpret.network import KANNetwork, count_parameters, kan_stack, kan_widths, stack_inputs
from kanzoo.interpret.prune import PruneReport, neuron_importance, prune, slice_kan_linear
from kanzoo.interpret.symbolic import (
    SymbolicKANLinear,
    auto_symbolic,
    edge_samples,
    make_symbolic,
    suggest_edge,
    symbolify,
    to_sympy,
)

__all__ = [
    "SYMBOLIC_LIBRARY",
    "Candidate",
    "EdgeSet",
    "KANNetwork",
    "PruneReport",
    "SymbolicFit",
    "SymbolicKANLinear",
    "auto_symbolic",
    "capture_inputs",
    "channel_knots",
    "channel_ranges",
    "count_parameters",
    "edge_importance",
    "edge_samples",
    "edge_set",
    "fit_candidate",
    "is_kan_conv",
    "is_kan_layer",
    "is_kan_linear",
    "kan_modules",
    "kan_stack",
    "kan_widths",
    "make_symbolic",
    "neuron_importance",
    "prune",
    "register_symbolic",
    "select_fit",
    "slice_kan_linear",
    "stack_inputs",
    "suggest_edge",
    "suggest_symbolic",
    "symbolify",
    "to_sympy",
]
