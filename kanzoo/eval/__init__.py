"""Evaluation: segmentation, classification and language-model metrics, and reports.

The metrics are pure functions (:func:`segmentation_scores`, :func:`classification_scores`,
:func:`lm_scores`); :func:`evaluate` (in :mod:`kanzoo.eval.runner`) runs a checkpoint on data and
writes ``metrics.json``, ``report.md`` and pictures. ``evaluate.py`` is its command-line front end
(:mod:`kanzoo.eval.cli`). A new task adds its evaluator with
:func:`kanzoo.eval.evaluators.register_evaluator`.

Imports are lazy (PEP 562): ``from kanzoo.eval.segmentation import ...`` loads only that module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LMScoreAccumulator": "kanzoo.eval.lm",
    "lm_scores": "kanzoo.eval.lm",
    "token_nll_sum": "kanzoo.eval.lm",
    "classification_scores": "kanzoo.eval.classification",
    "plot_confusion_matrix": "kanzoo.eval.classification",
    "evaluate": "kanzoo.eval.runner",
    "SegmentationAccumulator": "kanzoo.eval.segmentation",
    "hd95": "kanzoo.eval.segmentation",
    "logits_to_labels": "kanzoo.eval.segmentation",
    "segmentation_scores": "kanzoo.eval.segmentation",
    "ukan_scores": "kanzoo.eval.ukan",
    "ukan_split": "kanzoo.eval.ukan",
    "EvalConfig": "kanzoo.eval.config",
    "register_evaluator": "kanzoo.eval.evaluators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kanzoo.eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
