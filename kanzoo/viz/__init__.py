"""Pictures of KAN models: learned edge functions, small networks as in the KAN paper.

* :func:`plot_edges` draws the φ of any KAN layer (linear or conv), most important edges first.
* :func:`plot_network` draws a small stack of KAN layers with edge opacity by importance.
* :func:`plot_model_forecast` draws a forecaster's prediction with the history before it.
* ``python -m kanzoo.viz checkpoint=<dir|name> layer=<glob> [data=<name>] [output=<dir>]`` renders the
  edge plots of a trained checkpoint.

Pruning and symbolic regression of edges are in :mod:`kanzoo.interpret`. Training curves are written
by the trainer (``kanzoo.train.plot_loss_curve``), segmentation overlays by ``evaluate.py``.
Names are imported on first use (PEP 562); plotting needs the ``[interpret]`` extra (matplotlib).
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "plot_edges": ".edges",
    "save_figure": ".edges",
    "plot_forecast": ".forecast",
    "plot_model_forecast": ".forecast",
    "plot_network": ".network",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
