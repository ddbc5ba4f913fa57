"""Segmentation metrics on integer label maps: IoU, Dice, HD95, precision, recall, specificity.

Conventions (all metrics are computed from integer label maps; turn logits into labels with
:func:`logits_to_labels` first):

* **Foreground.** For a binary problem (``num_classes=2``) the foreground is class 1. For a
  multi-class problem every class ``c >= 1`` is a foreground class and class 0 is background.
  ``iou``/``dice``/``iou_pooled``/``dice_pooled``/``precision``/``recall``/``specificity``/``hd95``
  are about the foreground; ``per_class_iou``/``miou`` include the background class.
* **Per image** (``iou``, ``dice``): the score of every image is computed on its own, then the
  images are averaged with equal weight. An image where a foreground class is absent from both the
  prediction and the target scores 1.0 for that class (the model correctly predicted "nothing");
  for several foreground classes, an image's score is the mean over the classes present in its
  prediction or target (1.0 when none is). Every image counts.
* **Pooled** (``iou_pooled``, ``dice_pooled``, ``precision``, ``recall``, ``specificity``,
  ``per_class_iou``): true/false positive counts are summed over all pixels of all images first
  and the ratio is taken once ("micro" over pixels). Several foreground classes are then averaged
  with equal weight ("macro" over classes). A class absent from every prediction and every target
  gives NaN in ``per_class_iou`` and is skipped by ``miou`` and by the class averages.
* **ignore_index**: target pixels equal to it are removed from every count; for HD95 they are
  treated as background in both the prediction and the target.
* **HD95** (pixels; pass ``spacing`` for physical units): boundaries are the mask pixels that
  have a 4-connected (in 2-D; face-connected in N-D) neighbour outside the mask, where pixels
  beyond the image border count as outside. For each boundary pixel of one mask the Euclidean
  distance to the nearest boundary pixel of the other mask is taken (scipy's exact Euclidean
  distance transform). ``hd95_convention="pooled"`` (default) returns the 95th percentile of the
  union of both directed distance sets, which is what medpy's ``metric.binary.hd95`` does (the
  function U-KAN and many medical papers call); ``"max"`` returns the larger of the two directed
  95th percentiles, which is what MONAI's ``compute_hausdorff_distance(percentile=95)`` and
  DeepMind's ``surface_distance.compute_robust_hausdorff`` do. The two can differ by a pixel or
  more on irregular shapes. Percentiles use numpy's linear interpolation. Empty cases: both masks
  empty -> 0; exactly one empty -> the image diagonal ``sqrt(sum((size_d * spacing_d)^2))`` (the
  largest distance possible in the image). Every image counts; ``hd95_one_empty`` reports how many
  (image, class) pairs took the diagonal value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "SegmentationAccumulator",
    "confusion_counts",
    "confusion_matrices",
    "hd95",
    "logits_to_labels",
    "scores_from_confusion",
    "segmentation_scores",
    "to_label_list",
]

HD95_CONVENTIONS = ("pooled", "max")


def logits_to_labels(logits: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Turn segmentation logits ``(B, K, H, W)`` into integer label maps ``(B, H, W)``.

    Args:
        logits: model output. ``K == 1`` means binary with a sigmoid; ``K > 1`` means softmax classes.
        threshold: probability above which a binary pixel is foreground (``sigmoid(x) > threshold``).

    Returns:
        A ``torch.long`` tensor of labels (0/1 for binary, the argmax class otherwise).
    """
    if logits.ndim != 4:
        raise ValueError(f"segmentation logits must have shape (B, K, H, W), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        return (torch.sigmoid(logits[:, 0].float()) > threshold).long()
    return logits.argmax(dim=1)


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_label_list(x: Any, name: str = "input") -> list[np.ndarray]:
    """Normalize label maps to a list of integer numpy arrays.

    Accepts one ``(H, W)`` map, a batch ``(N, H, W)`` array/tensor, or a sequence of maps (sizes
    may differ between images). N-D maps (e.g. volumes) are accepted inside a sequence.
    """
    if isinstance(x, (np.ndarray, torch.Tensor)):
        arr = _as_numpy(x)
        if arr.ndim == 2:
            items = [arr]
        elif arr.ndim == 3:
            items = list(arr)
        else:
            raise ValueError(
                f"{name}: expected one (H, W) label map or a batch (N, H, W), got shape {arr.shape}; "
                "pass volumes as a list"
            )
    elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        items = [_as_numpy(m) for m in x]
    else:
        raise ValueError(f"{name}: expected arrays, tensors or a sequence of them, got {type(x).__name__}")
    out = []
    for i, m in enumerate(items):
        if m.dtype == bool:
            m = m.astype(np.int64)
        if not np.issubdtype(m.dtype, np.integer):
            if np.issubdtype(m.dtype, np.floating) and np.all(np.isfinite(m)) and np.all(m == np.round(m)):
                m = m.astype(np.int64)
            else:
                raise ValueError(
                    f"{name}[{i}]: label maps must hold integers (got dtype {m.dtype} with non-integer "
                    "values); threshold probabilities/logits first (see logits_to_labels)"
                )
        if m.ndim < 1:
            raise ValueError(f"{name}[{i}]: a label map needs at least one dimension")
        out.append(m.astype(np.int64, copy=False))
    return out


def confusion_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Confusion matrix ``C[t, p]`` = number of pixels with target ``t`` predicted as ``p``."""
    cm = confusion_matrices(
        torch.as_tensor(np.asarray(pred))[None], torch.as_tensor(np.asarray(target))[None],
        num_classes=num_classes, ignore_index=ignore_index,
    )  # fmt: skip
    return cm[0].numpy()


def confusion_matrices(
    preds: Any,
    targets: Any,
    *,
    num_classes: int,
    ignore_index: int | None = None,
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Per-image confusion matrices of a batch: ``C[b, t, p]`` pixels of target ``t`` predicted ``p``.

    The one counting routine behind every segmentation score in kanzoo (the trainer's validation
    IoU/Dice and ``evaluate.py``'s): target pixels equal to ``ignore_index`` are left out.

    Args:
        preds: ``(B, ...)`` integer labels in ``[0, num_classes)`` (tensor or array; any device).
        targets: ``(B, ...)`` integer labels in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: classes including background (2 for binary).
        ignore_index: target value whose pixels are not counted.
        names: one label per image for error messages (default ``image <b>``).

    Returns:
        ``(B, num_classes, num_classes)`` int64 counts on the device of ``preds``.

    Raises:
        ValueError: shapes differ or a label is out of range (the message names the image).
    """
    p = torch.as_tensor(preds)
    t = torch.as_tensor(targets, device=p.device)
    if p.shape != t.shape or p.ndim < 1:
        raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
    k = int(num_classes)
    b = p.shape[0]
    p = p.reshape(b, -1).long()
    t = t.reshape(b, -1).long()
    valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    bad_p = (p < 0) | (p >= k)
    bad_t = ((t < 0) | (t >= k)) & valid
    if bool(bad_p.any()) or bool(bad_t.any()):
        i = int((bad_p | bad_t).any(1).nonzero()[0, 0])
        label = names[i] if names is not None else f"image {i}"
        if bool(bad_p[i].any()):
            lo, hi = int(p[i].min()), int(p[i].max())
            raise ValueError(f"{label}: predicted labels must lie in [0, {k - 1}], got {lo}..{hi}")
        shown = torch.unique(t[i][bad_t[i]])[:10].tolist()
        raise ValueError(
            f"{label}: target labels must lie in [0, {k - 1}]"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f", got values {shown}"
        )
    offset = torch.arange(b, device=p.device)[:, None] * (k * k)
    code = torch.where(valid, offset + t * k + p, b * k * k)
    counts = torch.bincount(code.reshape(-1), minlength=b * k * k + 1)[: b * k * k]
    return counts.reshape(b, k, k)


def scores_from_confusion(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image foreground IoU and Dice from ``(B, K, K)`` confusion matrices (float64).

    A foreground class absent from both the prediction and the target of an image is skipped; an
    image where every foreground class is absent scores 1.0 (see the module docs).
    """
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)[:, 1:]
    fp = cm.sum(-2)[:, 1:] - tp
    fn = cm.sum(-1)[:, 1:] - tp
    union = tp + fp + fn
    present = union > 0
    iou_c = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    dice_c = torch.where(present, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.zeros_like(tp))
    n = present.sum(-1)
    none = n == 0
    iou = torch.where(none, torch.ones_like(n, dtype=cm.dtype), iou_c.sum(-1) / n.clamp(min=1))
    dice = torch.where(none, torch.ones_like(n, dtype=cm.dtype), dice_c.sum(-1) / n.clamp(min=1))
    return iou, dice


def _surface(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hd95(
    pred: Any,
    target: Any,
    *,
    spacing: Sequence[float] | None = None,
    convention: str = "pooled",
) -> float:
    """95th-percentile symmetric Hausdorff distance between two binary masks (see module docs).

    Args:
        pred: binary mask (any number of dimensions; non-zero = foreground).
        target: binary mask of the same shape.
        spacing: size of a pixel along each axis (default 1 = pixels).
        convention: ``"pooled"`` (95th percentile of both directed distance sets together, as
            medpy) or ``"max"`` (maximum of the two directed 95th percentiles, as MONAI).

    Returns:
        The distance; 0 when both masks are empty, the image diagonal when exactly one is.
    """
    if convention not in HD95_CONVENTIONS:
        raise ValueError(f"convention must be one of {HD95_CONVENTIONS}, got {convention!r}")
    a = _as_numpy(pred).astype(bool)
    b = _as_numpy(target).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"hd95: prediction shape {a.shape} != target shape {b.shape}")
    sp = np.ones(a.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if sp.shape != (a.ndim,):
        raise ValueError(f"hd95: spacing needs {a.ndim} values, got {spacing}")
    a_any, b_any = bool(a.any()), bool(b.any())
    if not a_any and not b_any:
        return 0.0
    if a_any != b_any:
        return float(math.sqrt(float(np.sum((np.asarray(a.shape) * sp) ** 2))))
    # Everything outside the bounding box of both masks (plus one pixel) is background, so the
    # surfaces and their exact distances are the same on that crop: memory follows the objects,
    # not the image.
    union = a | b
    box = []
    for axis in range(union.ndim):
        hits = np.flatnonzero(union.any(axis=tuple(d for d in range(union.ndim) if d != axis)))
        box.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    box = tuple(box)
    del union
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    if convention == "pooled":
        return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


class SegmentationAccumulator:
    """Streams images into the statistics behind :func:`segmentation_scores` (same conventions).

    Only per-image scalars and one ``K x K`` confusion matrix are kept, so whole datasets at their
    original resolution can be scored without holding every mask in memory. The trainer's
    validation metric uses the same class (:meth:`sums` / :meth:`from_sums` give additive
    statistics that can be all-reduced across processes), so the IoU printed during training and
    the one ``evaluate.py`` reports are computed by one code path.

    Args:
        num_classes: number of classes including background (2 for binary).
        ignore_index: target value whose pixels are left out of every count.
        compute_hd95: compute HD95 (the slowest metric); when False ``hd95`` is NaN.
        hd95_convention: ``"pooled"`` (medpy) or ``"max"`` (MONAI), see :func:`hd95`.
        spacing: pixel size per axis for HD95 (default: pixels).
    """

    #: Keys of :meth:`sums` (fixed order, so processes can all-reduce them as one vector).
    SUM_KEYS = ("iou", "dice", "n")

    def __init__(
        self,
        *,
        num_classes: int = 2,
        ignore_index: int | None = None,
        compute_hd95: bool = True,
        hd95_convention: str = "pooled",
        spacing: Sequence[float] | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(
                f"num_classes must be >= 2 (2 = binary foreground/background), got {num_classes}"
            )
        if hd95_convention not in HD95_CONVENTIONS:
            raise ValueError(f"hd95_convention must be one of {HD95_CONVENTIONS}, got {hd95_convention!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.compute_hd95 = compute_hd95
        self.hd95_convention = hd95_convention
        self.spacing = spacing
        self.total = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.img_iou: list[float] = []
        self.img_dice: list[float] = []
        self.img_hd: list[float] = []
        self.img_ids: list[str] = []
        self.one_empty = 0
        self.ignored = 0

    def update(self, pred: Any, target: Any, name: str | None = None) -> tuple[float, float, float]:
        """Add one image; returns its ``(iou, dice, hd95)``. ``name`` is its id (also in error messages)."""
        (p,) = to_label_list([pred], "preds")
        (t,) = to_label_list([target], "targets")
        name = name if name is not None else f"image {len(self.img_iou)}"
        label = f"mask of {name}"
        if p.shape != t.shape:
            raise ValueError(f"{label}: prediction shape {p.shape} != target shape {t.shape}")
        cm = confusion_matrices(
            torch.from_numpy(p)[None], torch.from_numpy(t)[None], num_classes=self.num_classes,
            ignore_index=self.ignore_index, names=[label],
        )[0]  # fmt: skip
        hd = self.image_hd95(p, t) if self.compute_hd95 else float("nan")
        return self.add_image(cm, hd=hd, name=name, ignored=int(t.size - int(cm.sum())))

    def update_batch(self, preds: Any, targets: Any, names: Sequence[str] | None = None) -> None:
        """Add a batch ``(B, ...)`` of label maps of one size (HD95 per image when enabled).

        ``names`` are the images' ids (kept in ``per_image_ids`` and used in error messages).
        """
        labels = None if names is None else [f"mask of {n}" for n in names]
        cms = confusion_matrices(
            preds, targets, num_classes=self.num_classes, ignore_index=self.ignore_index, names=labels
        )
        p_np = t_np = None
        if self.compute_hd95:
            p_np, t_np = _as_numpy(preds), _as_numpy(targets)
        for i in range(cms.shape[0]):
            label = names[i] if names is not None else f"image {len(self.img_iou)}"
            hd = self.image_hd95(p_np[i], t_np[i]) if p_np is not None else float("nan")
            pixels = int(torch.as_tensor(targets)[i].numel())
            self.add_image(cms[i], hd=hd, name=label, ignored=pixels - int(cms[i].sum()))

    def image_hd95(self, pred: np.ndarray, target: np.ndarray) -> float:
        """HD95 of one image, averaged over the foreground classes present (0.0 when none is)."""
        valid = None if self.ignore_index is None else target != self.ignore_index
        dists = []
        for c in range(1, self.num_classes):
            pc, tc = pred == c, target == c
            if valid is not None:
                pc &= valid
                tc &= valid
            if not pc.any() and not tc.any():
                continue
            self.one_empty += int(pc.any() != tc.any())
            dists.append(hd95(pc, tc, spacing=self.spacing, convention=self.hd95_convention))
        return float(np.mean(dists)) if dists else 0.0

    def add_image(
        self, cm: Any, *, hd: float = float("nan"), name: str | None = None, ignored: int = 0
    ) -> tuple[float, float, float]:
        """Add one image given its ``(K, K)`` confusion matrix (e.g. counted tile by tile).

        Args:
            cm: ``C[t, p]`` pixel counts of the image (ignored pixels excluded).
            hd: its HD95 (NaN when not computed).
            name: its id, kept in ``per_image_ids``.
            ignored: how many of its pixels were ignored (reported as ``ignored_pixels``).
        """
        cm_t = torch.as_tensor(cm).detach().cpu().long()
        if cm_t.shape != (self.num_classes, self.num_classes):
            k = self.num_classes
            raise ValueError(f"confusion matrix must be {k}x{k}, got {tuple(cm_t.shape)}")
        iou_t, dice_t = scores_from_confusion(cm_t[None])
        iou, dice = float(iou_t[0]), float(dice_t[0])
        self.total += cm_t.numpy()
        self.img_iou.append(iou)
        self.img_dice.append(dice)
        self.img_hd.append(float(hd))
        self.img_ids.append(name if name is not None else f"image {len(self.img_ids)}")
        self.ignored += int(ignored)
        return iou, dice, float(hd)

    def sums(self) -> dict[str, float]:
        """Additive statistics (sum of per-image IoU and Dice, image count), keys :attr:`SUM_KEYS`."""
        return {
            "iou": float(np.sum(self.img_iou)),
            "dice": float(np.sum(self.img_dice)),
            "n": float(len(self.img_iou)),
        }

    @staticmethod
    def from_sums(sums: dict[str, float]) -> dict[str, float]:
        """Mean per-image ``iou`` and ``dice`` from (all-reduced) :meth:`sums`."""
        n = float(sums["n"])
        if n <= 0:
            return {"iou": float("nan"), "dice": float("nan")}
        return {"iou": float(sums["iou"]) / n, "dice": float(sums["dice"]) / n}

    def result(self) -> dict[str, Any]:
        """The metrics dict described in :func:`segmentation_scores`."""
        if not self.img_iou:
            raise ValueError("segmentation_scores needs at least one image")
        k = self.num_classes
        fg = range(1, k)
        total = self.total
        tp = np.diag(total).astype(np.float64)
        fp = total.sum(axis=0) - tp
        fn = total.sum(axis=1) - tp
        tn = total.sum() - tp - fp - fn
        per_class_iou = [_safe_div(tp[c], tp[c] + fp[c] + fn[c]) for c in range(k)]
        per_class_dice = [_safe_div(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(k)]

        def macro(values: list[float]) -> float:
            vals = [v for v in values if not math.isnan(v)]
            return float(np.mean(vals)) if vals else float("nan")

        return {
            "iou": float(np.mean(self.img_iou)),
            "dice": float(np.mean(self.img_dice)),
            "iou_pooled": macro([per_class_iou[c] for c in fg]),
            "dice_pooled": macro([per_class_dice[c] for c in fg]),
            "miou": macro(per_class_iou),
            "per_class_iou": per_class_iou,
            "per_class_dice": per_class_dice,
            "hd95": float(np.mean(self.img_hd)),
            "precision": macro([_safe_div(tp[c], tp[c] + fp[c]) for c in fg]),
            "recall": macro([_safe_div(tp[c], tp[c] + fn[c]) for c in fg]),
            "specificity": macro([_safe_div(tn[c], tn[c] + fp[c]) for c in fg]),
            "per_image_ids": list(self.img_ids),
            "per_image_iou": list(self.img_iou),
            "per_image_dice": list(self.img_dice),
            "per_image_hd95": list(self.img_hd),
            "num_images": len(self.img_iou),
            "hd95_one_empty": self.one_empty,
            "ignored_pixels": self.ignored,
        }


def segmentation_scores(
    preds: Any,
    targets: Any,
    num_classes: int = 2,
    ignore_index: int | None = None,
    *,
    compute_hd95: bool = True,
    hd95_convention: str = "pooled",
    spacing: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Score predicted label maps against target label maps (conventions in the module docs).

    Args:
        preds: predicted integer label maps: one ``(H, W)`` map, a batch ``(N, H, W)`` or a list of
            maps (sizes may differ between images but must match the paired target).
        targets: target label maps, same layout as ``preds``.
        num_classes: number of classes including background (2 for binary).
        ignore_index: target value whose pixels are left out of every count.
        compute_hd95: compute HD95 (the slowest metric); when False ``hd95`` is NaN.
        hd95_convention: ``"pooled"`` (medpy) or ``"max"`` (MONAI), see :func:`hd95`.
        spacing: pixel size per axis for HD95 (default: pixels).

    Returns:
        A dict with floats ``iou``, ``dice``, ``iou_pooled``, ``dice_pooled``, ``miou``, ``hd95``,
        ``precision``, ``recall``, ``specificity``, lists ``per_class_iou``, ``per_class_dice``,
        ``per_image_ids``, ``per_image_iou``, ``per_image_dice``, ``per_image_hd95``, and ints
        ``num_images``, ``hd95_one_empty``, ``ignored_pixels``.
    """
    acc = SegmentationAccumulator(
        num_classes=num_classes,
        ignore_index=ignore_index,
        compute_hd95=compute_hd95,
        hd95_convention=hd95_convention,
        spacing=spacing,
    )
    p_list = to_label_list(preds, "preds")
    t_list = to_label_list(targets, "targets")
    if len(p_list) != len(t_list):
        raise ValueError(f"got {len(p_list)} predictions but {len(t_list)} targets")
    for i, (p, t) in enumerate(zip(p_list, t_list)):
        acc.update(p, t, name=f"image {i}")
    return acc.result()
