"""Segmentation metrics against hand-computed cases and a brute-force HD95 reference."""

import math

import numpy as np
import pytest
import torch

from kanzoo.eval import hd95, logits_to_labels, segmentation_scores


def _brute_surface(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour that is background or outside the image (explicit loops)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                a, b = i + di, j + dj
                if not (0 <= a < h and 0 <= b < w) or not mask[a, b]:
                    out[i, j] = True
    return out


def _brute_hd95(a: np.ndarray, b: np.ndarray, convention: str) -> float:
    pa = np.argwhere(_brute_surface(a)).astype(float)
    pb = np.argwhere(_brute_surface(b)).astype(float)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    if convention == "pooled":
        return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


@pytest.mark.parametrize("convention", ["pooled", "max"])
def test_hd95_matches_brute_force(convention):
    rng = np.random.default_rng(1)
    for trial in range(25):
        h, w = rng.integers(5, 24, size=2)
        a = rng.random((h, w)) < rng.uniform(0.1, 0.7)
        b = rng.random((h, w)) < rng.uniform(0.1, 0.7)
        a[rng.integers(h), rng.integers(w)] = True
        b[rng.integers(h), rng.integers(w)] = True
        expected = _brute_hd95(a, b, convention)
        assert hd95(a, b, convention=convention) == pytest.approx(expected, abs=1e-9), trial


def test_hd95_conventions_differ_and_are_symmetric():
    a = np.zeros((30, 30), bool)
    a[5:10, 5:10] = True
    b = a.copy()
    b[20:22, 20:30] = True  # an extra blob only in b: the directed sets differ a lot
    pooled, mx = hd95(a, b), hd95(a, b, convention="max")
    assert pooled == pytest.approx(_brute_hd95(a, b, "pooled"))
    assert mx == pytest.approx(_brute_hd95(a, b, "max"))
    assert mx > pooled
    assert hd95(b, a) == pytest.approx(pooled)
    assert hd95(b, a, convention="max") == pytest.approx(mx)


def test_hd95_shifted_square_and_spacing():
    a = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    b = np.roll(a, 3, axis=1)  # every boundary point is at most 3 px from the other boundary
    assert hd95(a, b) <= 3.0 + 1e-12
    assert hd95(a, b) > 0
    # anisotropic spacing scales the column distance
    assert hd95(a, b, spacing=(1.0, 2.0)) == pytest.approx(2 * hd95(a, b))


def test_hd95_empty_cases():
    e = np.zeros((6, 8), bool)
    f = e.copy()
    f[2, 3] = True
    assert hd95(e, e) == 0.0
    assert hd95(e, f) == pytest.approx(10.0)  # diagonal sqrt(6^2 + 8^2)
    assert hd95(f, e) == pytest.approx(10.0)
    assert hd95(f, f) == 0.0


def test_binary_hand_computed():
    # image 1: pred 4 px, target 6 px, overlap 3 -> TP 3, FP 1, FN 3, TN 9 (of 16)
    t1 = np.zeros((4, 4), int)
    t1[0:2, 0:3] = 1
    p1 = np.zeros((4, 4), int)
    p1[0, 0:3] = 1
    p1[3, 3] = 1
    # image 2: both empty
    t2 = np.zeros((4, 4), int)
    p2 = np.zeros((4, 4), int)
    s = segmentation_scores([p1, p2], [t1, t2])
    assert s["per_image_iou"] == pytest.approx([3 / 7, 1.0])
    assert s["per_image_dice"] == pytest.approx([6 / 10, 1.0])
    assert s["iou"] == pytest.approx((3 / 7 + 1) / 2)
    assert s["dice"] == pytest.approx((0.6 + 1) / 2)
    # pooled over both images: TP 3, FP 1, FN 3, TN 9 + 16
    assert s["iou_pooled"] == pytest.approx(3 / 7)
    assert s["dice_pooled"] == pytest.approx(6 / 10)
    assert s["precision"] == pytest.approx(3 / 4)
    assert s["recall"] == pytest.approx(3 / 6)
    assert s["specificity"] == pytest.approx(25 / 26)
    # background IoU: TP_bg = 25, FP_bg = FN of fg = 3, FN_bg = FP of fg = 1
    assert s["per_class_iou"] == pytest.approx([25 / 29, 3 / 7])
    assert s["miou"] == pytest.approx((25 / 29 + 3 / 7) / 2)
    assert s["per_image_hd95"][1] == 0.0
    assert s["per_image_hd95"][0] == pytest.approx(_brute_hd95(p1.astype(bool), t1.astype(bool), "pooled"))
    assert s["num_images"] == 2 and s["hd95_one_empty"] == 0


def test_empty_prediction_and_all_foreground():
    t = np.ones((3, 5), int)
    p_empty = np.zeros((3, 5), int)
    s = segmentation_scores([p_empty], [t])
    assert s["iou"] == 0.0 and s["dice"] == 0.0
    assert s["hd95"] == pytest.approx(math.sqrt(3**2 + 5**2))
    assert s["hd95_one_empty"] == 1
    assert math.isnan(s["precision"])  # nothing predicted positive
    assert s["recall"] == 0.0
    assert math.isnan(s["specificity"])  # no negative pixel
    s_full = segmentation_scores([t], [t])
    assert s_full["iou"] == 1.0 and s_full["dice"] == 1.0 and s_full["hd95"] == 0.0
    assert math.isnan(s_full["per_class_iou"][0])  # background absent from both
    assert s_full["miou"] == 1.0  # the absent class is skipped


def test_multiclass_class_absent_from_both():
    t = np.array([[0, 1, 1], [0, 1, 1], [3, 3, 0]])
    p = np.array([[0, 1, 0], [0, 1, 1], [3, 0, 0]])
    s = segmentation_scores(p[None], t[None], num_classes=4)
    # class 1: TP 3, FP 0, FN 1 -> 3/4 ; class 3: TP 1, FN 1 -> 1/2 ; class 2: absent -> NaN
    # class 0: TP 3, FP 2 (one 1->0, one 3->0), FN 0 -> 3/5
    assert s["per_class_iou"][0] == pytest.approx(3 / 5)
    assert s["per_class_iou"][1] == pytest.approx(3 / 4)
    assert math.isnan(s["per_class_iou"][2])
    assert s["per_class_iou"][3] == pytest.approx(1 / 2)
    assert s["miou"] == pytest.approx((3 / 5 + 3 / 4 + 1 / 2) / 3)
    # per-image foreground IoU averages the classes present (1 and 3), not the absent class 2
    assert s["iou"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert s["iou_pooled"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert s["dice"] == pytest.approx((6 / 7 + 2 / 3) / 2)


def test_ignore_index_removes_pixels():
    t = np.array([[1, 1, 255], [0, 0, 255]])
    p = np.array([[1, 0, 1], [0, 1, 1]])
    s = segmentation_scores([p], [t], ignore_index=255)
    # valid pixels: (1,1) (1,0) (0,0) (0,1) -> TP 1, FN 1, FP 1, TN 1
    assert s["iou"] == pytest.approx(1 / 3)
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["specificity"] == pytest.approx(1 / 2)
    # the predicted 1s at ignored pixels do not enter HD95 either
    pv = np.array([[1, 0, 0], [0, 1, 0]], bool)
    tv = np.array([[1, 1, 0], [0, 0, 0]], bool)
    assert s["hd95"] == pytest.approx(_brute_hd95(pv, tv, "pooled"))
    with pytest.raises(ValueError, match="target labels"):
        segmentation_scores([p], [t])  # 255 is out of range without ignore_index


def test_inputs_batch_tensor_list_and_errors():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 2, size=(3, 8, 8))
    t = rng.integers(0, 2, size=(3, 8, 8))
    a = segmentation_scores(p, t)
    b = segmentation_scores(torch.from_numpy(p), [torch.from_numpy(x) for x in t])
    assert a["iou"] == pytest.approx(b["iou"]) and a["hd95"] == pytest.approx(b["hd95"])
    with pytest.raises(ValueError, match="shape"):
        segmentation_scores([p[0]], [t[0, :4]])
    with pytest.raises(ValueError, match="predicted labels"):
        segmentation_scores([p[0] * 3], [t[0]])
    with pytest.raises(ValueError, match="integers"):
        segmentation_scores([p[0] * 0.5], [t[0]])
    with pytest.raises(ValueError, match="2 predictions but 3"):
        segmentation_scores(p[:2], t)


def test_iou_matches_sklearn_jaccard():
    from sklearn.metrics import f1_score, jaccard_score

    rng = np.random.default_rng(3)
    p = rng.integers(0, 3, size=(4, 10, 12))
    t = rng.integers(0, 3, size=(4, 10, 12))
    s = segmentation_scores(p, t, num_classes=3, compute_hd95=False)
    ref = jaccard_score(t.ravel(), p.ravel(), average=None, labels=[0, 1, 2])
    assert s["per_class_iou"] == pytest.approx(ref.tolist())
    assert s["iou_pooled"] == pytest.approx(ref[1:].mean())
    dice_ref = f1_score(t.ravel(), p.ravel(), average=None, labels=[0, 1, 2])
    assert s["per_class_dice"] == pytest.approx(dice_ref.tolist())
    assert math.isnan(s["hd95"])


def test_logits_to_labels():
    logits = torch.tensor([[[[-1.0, 0.1], [2.0, 0.0]]]])  # (1, 1, 2, 2)
    assert logits_to_labels(logits).tolist() == [[[0, 1], [1, 0]]]  # sigmoid(0) = 0.5 is not > 0.5
    assert logits_to_labels(logits, threshold=0.9).tolist() == [[[0, 0], [0, 0]]]
    multi = torch.randn(2, 3, 4, 4)
    assert torch.equal(logits_to_labels(multi), multi.argmax(1))
    with pytest.raises(ValueError, match="threshold"):
        logits_to_labels(logits, threshold=1.5)
