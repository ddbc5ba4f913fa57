"""Evaluation: segmentation, classification and language-model metrics, benchmark data, reports.

The metrics are pure functions (:func:`segmentation_scores`, :func:`classification_scores`,
:func:`lm_scores`); :func:`evaluate` (in :mod:`kanzoo.eval.runner`) runs a checkpoint on data and
writes ``metrics.json``, ``report.md`` and pictures. ``evaluate.py`` is its Hydra front end.
"""

from kanzoo.eval import benchmarks  # noqa: F401  (registers busi, glas, ... with kanzoo.data)
from kanzoo.eval.classification import classification_scores, plot_confusion_matrix
from kanzoo.eval.lm import LMScoreAccumulator, lm_scores, token_nll_sum
from kanzoo.eval.runner import evaluate
from kanzoo.eval.segmentation import hd95, logits_to_labels, segmentation_scores
from kanzoo.eval.ukan import ukan_scores, ukan_split

__all__ = [
    "LMScoreAccumulator",
    "classification_scores",
    "evaluate",
    "hd95",
    "lm_scores",
    "logits_to_labels",
    "plot_confusion_matrix",
    "segmentation_scores",
    "token_nll_sum",
    "ukan_scores",
    "ukan_split",
]
