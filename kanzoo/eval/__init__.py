"""Evaluation: segmentation, classification and language-model metrics, benchmark data, reports.

The metrics are pure functions (:func:`segmentation_scores`, :func:`classification_scores`,
:func:`lm_scores`); :func:`evaluate` (in :mod:`kanzoo.eval.runner`) runs a checkpoint on data and
writes ``metrics.json``, ``report.md`` and pictures. ``evaluate.py`` is its Hydra front end.

Names are imported on first use (PEP 562). The benchmarks of :mod:`kanzoo.eval.benchmarks` (busi,
glas, ...) are registered with ``kanzoo.data.build_data`` on its first use.
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "classification_scores": ".classification",
    "plot_confusion_matrix": ".classification",
    "LMScoreAccumulator": ".lm",
    "lm_scores": ".lm",
    "token_nll_sum": ".lm",
    "evaluate": ".runner",
    "hd95": ".segmentation",
    "logits_to_labels": ".segmentation",
    "segmentation_scores": ".segmentation",
    "ukan_scores": ".ukan",
    "ukan_split": ".ukan",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
