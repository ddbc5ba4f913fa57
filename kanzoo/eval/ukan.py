"""The U-KAN paper's evaluation protocol, reproduced so results can sit beside published numbers.

What U-KAN's ``train.py``/``val.py`` do (read from its public code, re-implemented here):

* **Split**: the image ids (file stems of ``<root>/images/*<ext>``) are sorted and split 80/20 by
  ``sklearn.model_selection.train_test_split(ids, test_size=0.2, random_state=seed)``; the 20% part
  is the validation set that is both used to pick the best epoch and reported (default seed 2981).
* **Inputs**: resized to the training resolution and normalized with the ImageNet mean/std;
  the mask is resized the same way and binarized at 0.5 of its 0..1 range.
* **Prediction**: ``sigmoid(logit) > 0.5``.
* **IoU**: per batch of 8 images (in loader order, last batch smaller) all pixels of the batch are
  pooled, ``iou_b = (|P∩T| + 1e-5) / (|P∪T| + 1e-5)``; the reported IoU is the mean of ``iou_b``
  weighted by batch size. **Dice** is derived per batch as ``2·iou_b / (1 + iou_b)`` and averaged
  the same way (so it is not the pixel-wise Dice).
* **HD95**: medpy's ``hd95`` applied to the whole ``(B, 1, H, W)`` batch array as ONE 4-D volume
  (95th percentile of both directed distance sets pooled), 0 when either volume is empty, averaged weighted
  by batch size. Because of the singleton channel axis, medpy's boundary extraction (erosion with
  a zero border) erodes everything, so every foreground pixel counts as boundary, and distances run
  across the images of a batch. It is a batch statistic, not a per-image boundary distance; it is
  reproduced here only as ``hd95_ukan`` for comparison with published tables.

Inputs: U-KAN's own loader reads images with OpenCV (BGR channel order) and divides the
ImageNet-normalized image by 255 once more; kanzoo feeds every checkpoint the RGB, ImageNet-
normalized inputs it was trained on. The protocol's comparability comes from the split, the
threshold and the pooled scoring, which are reproduced exactly.

Differences with our default protocol are deliberate: the default scores each image at its
original resolution and weighs every image equally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kanzoo.eval.segmentation import hd95, to_label_list

__all__ = ["UKAN_BATCH_SIZE", "UKAN_SEED", "UKAN_SMOOTH", "ukan_scores", "ukan_split"]

UKAN_SEED = 2981
UKAN_BATCH_SIZE = 8
UKAN_SMOOTH = 1e-5


def ukan_split(
    ids: Sequence[str], *, seed: int = UKAN_SEED, test_size: float = 0.2
) -> tuple[list[str], list[str]]:
    """Return ``(train_ids, val_ids)`` exactly as U-KAN splits its datasets.

    Args:
        ids: image ids (file stems); they are sorted first, as U-KAN sorts its glob.
        seed: ``random_state`` of ``train_test_split`` (U-KAN's ``--dataseed``, default 2981).
        test_size: fraction held out (0.2 in U-KAN).
    """
    from sklearn.model_selection import train_test_split

    ids = sorted(ids)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 image ids to split, got {len(ids)}")
    train, val = train_test_split(ids, test_size=test_size, random_state=seed)
    return list(train), list(val)


def ukan_scores(
    preds: Any,
    targets: Any,
    *,
    batch_size: int = UKAN_BATCH_SIZE,
    compute_hd95: bool = True,
) -> dict[str, float]:
    """Batch-pooled IoU/Dice (and batch-volume HD95) as reported by U-KAN.

    Args:
        preds: binary predicted maps (0/1), in loader order, all of the same size (the training
            resolution): a batch ``(N, H, W)`` or a list of ``(H, W)`` maps.
        targets: binary targets in the same order and size.
        batch_size: images per batch (8 in U-KAN).
        compute_hd95: also compute ``hd95_ukan``.

    Returns:
        ``{"iou": ..., "dice": ..., "hd95_ukan": ..., "num_images": N}``.
    """
    p_list = to_label_list(preds, "preds")
    t_list = to_label_list(targets, "targets")
    if len(p_list) != len(t_list) or not p_list:
        raise ValueError(
            f"need the same non-zero number of predictions and targets, got {len(p_list)}/{len(t_list)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, (p, t) in enumerate(zip(p_list, t_list)):
        if p.shape != t.shape or p.shape != p_list[0].shape:
            raise ValueError(f"image {i}: U-KAN protocol needs equal sizes, got {p.shape} vs {t.shape}")
        for name, m in (("prediction", p), ("target", t)):
            if m.size and (m.min() < 0 or m.max() > 1):
                raise ValueError(
                    f"image {i}: the U-KAN protocol is binary; {name} has values {np.unique(m)[:10]}"
                )
    iou_sum = dice_sum = hd_sum = 0.0
    n = len(p_list)
    for start in range(0, n, batch_size):
        p = np.stack(p_list[start : start + batch_size]).astype(bool)[:, None]  # (B, 1, H, W) as U-KAN
        t = np.stack(t_list[start : start + batch_size]).astype(bool)[:, None]
        b = p.shape[0]
        inter = float(np.logical_and(p, t).sum())
        union = float(np.logical_or(p, t).sum())
        iou_b = (inter + UKAN_SMOOTH) / (union + UKAN_SMOOTH)
        iou_sum += iou_b * b
        dice_sum += 2 * iou_b / (1 + iou_b) * b
        if compute_hd95:
            # medpy raises on an empty volume and U-KAN then records 0.
            hd_b = hd95(p, t, convention="pooled") if (p.any() and t.any()) else 0.0
            hd_sum += hd_b * b
    return {
        "iou": iou_sum / n,
        "dice": dice_sum / n,
        "hd95_ukan": hd_sum / n if compute_hd95 else float("nan"),
        "num_images": n,
    }
