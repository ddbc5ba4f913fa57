"""Task losses and evaluation sums against independent numpy references."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from kanzoo.train.tasks import get_task, soft_dice_loss


class Fixed(torch.nn.Module):
    """Returns preset logits whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, *args, **kwargs):
        return self.logits


def test_lm_eval_sums_match_numpy_shifted_nll():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    ids = torch.randint(0, 7, (2, 5))
    sums = get_task("lm").eval_sums(Fixed(logits), {"input_ids": ids, "labels": ids})
    lg, y = logits.numpy()[:, :-1], ids.numpy()[:, 1:]
    nll = -(np.take_along_axis(lg, y[..., None], -1)[..., 0] - logsumexp(lg, axis=-1)).sum()
    assert sums["tokens"] == 8
    assert sums["nll"] == pytest.approx(nll, rel=1e-6)
    assert sums["correct"] == (lg.argmax(-1) == y).sum()
    metrics = get_task("lm").finalize(sums)
    assert metrics["val_ppl_est"] == pytest.approx(np.exp(nll / 8), rel=1e-6)
    assert metrics["eval_tokens"] == 8


def test_classification_accuracy_and_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    task = get_task("classification")
    m = task.finalize(task.eval_sums(Fixed(logits), {"pixel_values": torch.zeros(3, 1), "labels": labels}))
    lse = logsumexp(logits.numpy(), axis=1)
    ref = np.mean(lse - logits.numpy()[np.arange(3), labels.numpy()])
    assert m["val_acc"] == pytest.approx(2 / 3) and m["val_loss"] == pytest.approx(ref, rel=1e-6)


def _np_scores(pred, mask, classes):
    ious, dices = [], []
    for p, t in zip(pred, mask):
        ci, cd = [], []
        for c in range(1, classes):
            a, b = p == c, t == c
            union, total = (a | b).sum(), a.sum() + b.sum()
            ci.append(1.0 if union == 0 else (a & b).sum() / union)
            cd.append(1.0 if union == 0 else 2 * (a & b).sum() / total)
        ious.append(np.mean(ci))
        dices.append(np.mean(cd))
    return np.mean(ious), np.mean(dices)


def test_binary_segmentation_iou_dice_per_image():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(4, 1, 9, 9)), dtype=torch.float32)
    mask = torch.tensor(rng.integers(0, 2, size=(4, 9, 9)))
    mask[3] = 0
    logits[3] = -5.0  # empty prediction of an empty mask scores 1
    task = get_task("segmentation")
    m = task.finalize(task.eval_sums(Fixed(logits), {"pixel_values": torch.zeros(4, 1), "mask": mask}))
    iou, dice = _np_scores((logits[:, 0] > 0).long().numpy(), mask.numpy(), 2)
    assert m["val_iou"] == pytest.approx(iou) and m["val_dice"] == pytest.approx(dice)


def test_multiclass_segmentation_iou_dice_per_image():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(3, 4, 6, 6)), dtype=torch.float32)
    mask = torch.tensor(rng.integers(0, 4, size=(3, 6, 6)))
    task = get_task("segmentation")
    m = task.finalize(task.eval_sums(Fixed(logits), {"pixel_values": torch.zeros(3, 1), "mask": mask}))
    iou, dice = _np_scores(logits.argmax(1).numpy(), mask.numpy(), 4)
    assert m["val_iou"] == pytest.approx(iou) and m["val_dice"] == pytest.approx(dice)


def test_soft_dice_loss_limits():
    mask = torch.zeros(2, 8, 8, dtype=torch.long)
    mask[:, 2:6, 2:6] = 1
    perfect = torch.where(mask.bool(), 50.0, -50.0)[:, None]
    assert soft_dice_loss(perfect, mask, eps=1e-6).item() == pytest.approx(0.0, abs=1e-5)
    assert soft_dice_loss(-perfect, mask, eps=1e-6).item() == pytest.approx(1.0, abs=1e-5)
    multi = torch.nn.functional.one_hot(mask, 2).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(multi, mask, eps=1e-6).item() == pytest.approx(0.0, abs=1e-5)


def test_segmentation_size_mismatch_is_named():
    task = get_task("segmentation")
    with pytest.raises(ValueError, match=r"logits \(8, 8\) and masks \(9, 9\)"):
        task.loss(Fixed(torch.zeros(1, 1, 8, 8)), {"pixel_values": None, "mask": torch.zeros(1, 9, 9)})


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'detection'"):
        get_task("detection")
