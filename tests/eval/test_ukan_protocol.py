"""The U-KAN protocol: split reproduction and the batch-pooled IoU formula on a worked example."""

import numpy as np
import pytest

from kanzoo.eval import hd95, ukan_scores, ukan_split
from kanzoo.eval.ukan import UKAN_SMOOTH


def test_worked_example_batch_pooled_iou():
    # 3 images of 2x2, batch size 2 -> batches {0, 1} and {2}.
    p0, t0 = np.array([[1, 0], [0, 0]]), np.array([[1, 0], [0, 0]])  # inter 1, union 1
    p1, t1 = np.array([[0, 0], [0, 0]]), np.array([[0, 0], [1, 1]])  # inter 0, union 2
    p2, t2 = np.array([[1, 1], [1, 1]]), np.array([[1, 1], [1, 0]])  # inter 3, union 4
    s = ukan_scores([p0, p1, p2], [t0, t1, t2], batch_size=2, compute_hd95=False)
    # batch 1 pools: inter 1, union 3 -> 1/3 ; batch 2: 3/4 = 0.75 ; weights 2 and 1
    iou_b1 = (1 + UKAN_SMOOTH) / (3 + UKAN_SMOOTH)
    iou_b2 = (3 + UKAN_SMOOTH) / (4 + UKAN_SMOOTH)
    assert s["iou"] == pytest.approx((2 * iou_b1 + iou_b2) / 3, abs=1e-12)
    assert s["iou"] == pytest.approx((2 / 3 + 0.75) / 3, abs=1e-5)
    assert s["dice"] == pytest.approx((2 * (2 / 3) / (4 / 3) + 1.5 / 1.75) / 3, abs=1e-5)
    # the batch-pooled number differs from the per-image mean (1 + 0 + 0.75) / 3
    assert abs(s["iou"] - (1 + 0 + 0.75) / 3) > 0.1
    assert s["num_images"] == 3


def test_batch_of_empty_masks_scores_one_and_hd95_zero():
    z = np.zeros((4, 4), int)
    s = ukan_scores([z, z], [z, z])
    assert s["iou"] == pytest.approx(1.0) and s["dice"] == pytest.approx(1.0)
    assert s["hd95_ukan"] == 0.0


def test_hd95_ukan_is_a_batch_volume_statistic():
    rng = np.random.default_rng(0)
    p = (rng.random((5, 9, 9)) > 0.5).astype(int)
    t = (rng.random((5, 9, 9)) > 0.5).astype(int)
    s = ukan_scores(p, t, batch_size=8)
    # One batch: all foreground pixels of the (B, 1, H, W) volume act as boundary, so the value is the
    # pooled 95th percentile of nearest-foreground distances in 3-D (brute force).
    pa = np.argwhere(p.astype(bool)).astype(float)
    pb = np.argwhere(t.astype(bool)).astype(float)
    d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
    ref = np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)
    assert s["hd95_ukan"] == pytest.approx(ref)
    assert s["hd95_ukan"] == pytest.approx(hd95(p[:, None], t[:, None]))


def test_split_matches_sklearn_on_sorted_ids():
    from sklearn.model_selection import train_test_split

    ids = [f"img_{i:03d}" for i in range(50)]
    shuffled = list(reversed(ids))
    train, val = ukan_split(shuffled, seed=2981)
    ref_train, ref_val = train_test_split(sorted(ids), test_size=0.2, random_state=2981)
    assert train == list(ref_train) and val == list(ref_val)
    assert len(val) == 10 and set(train) | set(val) == set(ids) and not set(train) & set(val)
    assert ukan_split(ids, seed=1)[1] != val  # the seed matters


def test_rejects_multiclass_and_mismatched_sizes():
    with pytest.raises(ValueError, match="binary"):
        ukan_scores([np.full((2, 2), 2)], [np.zeros((2, 2), int)])
    with pytest.raises(ValueError, match="equal sizes"):
        ukan_scores([np.zeros((2, 2), int), np.zeros((3, 3), int)], [np.zeros((2, 2), int)] * 2)
