"""Pictures of KAN models: learned edge functions, small networks as in the KAN paper.

* :func:`plot_edges` draws the φ of any KAN layer (linear or conv), most important edges first.
* :func:`plot_network` draws a small stack of KAN layers with edge opacity by importance.
* :func:`plot_model_forecast` draws a forecaster's prediction with the history before it.
* ``python -m kanzoo.viz checkpoint=<dir|name> layer=<glob> [data=<name>] [output=<dir>]`` renders the
  edge plots of a trained checkpoint.

Pruning and symbolic regression of edges are in :mod:`kanzoo.interpret`. Training curves are written
by the trainer (``kanzoo.train.plot_loss_curve``), segmentation overlays by ``evaluate.py``.
"""

from kanzoo.viz.edges import plot_edges, save_figure
from kanzoo.viz.forecast import plot_forecast, plot_model_forecast
from kanzoo.viz.network import plot_network

__all__ = ["plot_edges", "plot_forecast", "plot_model_forecast", "plot_network", "save_figure"]
