"""The trainer's validation IoU/Dice and evaluate.py's are one computation, ignored pixels included.

Both are checked against a per-image numpy reference written here (IoU = TP / (TP + FP + FN) over
the pixels that are not ignored, averaged over the foreground classes present in the image).
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from kanzoo.data import DataModule
from kanzoo.data.masks import IGNORE_INDEX
from kanzoo.eval.runner import evaluate
from kanzoo.train.tasks import get_task, soft_dice_loss


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Lookup(nn.Module):
    """Returns preset logits for image ``b`` (each input image is filled with its index)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x):
        return self.table[x[:, 0, 0, 0].long()]


def _reference(pred, mask, num_classes):
    ious, dices = [], []
    for p, t in zip(pred, mask):
        keep = t != IGNORE_INDEX
        p, t = p[keep], t[keep]
        ci, cd = [], []
        for c in range(1, num_classes):
            tp = np.sum((p == c) & (t == c))
            fp = np.sum((p == c) & (t != c))
            fn = np.sum((p != c) & (t == c))
            if tp + fp + fn:
                ci.append(tp / (tp + fp + fn))
                cd.append(2 * tp / (2 * tp + fp + fn))
        ious.append(np.mean(ci) if ci else 1.0)
        dices.append(np.mean(cd) if cd else 1.0)
    return float(np.mean(ious)), float(np.mean(dices))


def _case(channels, seed):
    rng = np.random.default_rng(seed)
    n, h, w = 5, 12, 10
    classes = 2 if channels == 1 else channels
    logits = torch.tensor(rng.normal(size=(n, channels, h, w)), dtype=torch.float32)
    mask = rng.integers(0, classes, size=(n, h, w))
    mask[rng.random((n, h, w)) < 0.3] = IGNORE_INDEX  # ignored pixels in every image
    mask[2] = IGNORE_INDEX  # and one image that is ignored entirely
    mask[2, :3] = 1
    return logits, torch.tensor(mask), classes


@pytest.mark.parametrize("channels", [1, 4])
def test_trainer_metric_equals_evaluate_and_reference_with_ignored_pixels(tmp_path, channels):
    logits, mask, classes = _case(channels, seed=channels)
    if channels == 1:
        pred = (torch.sigmoid(logits[:, 0]) > 0.5).long().numpy()
    else:
        pred = logits.argmax(1).numpy()
    ref_iou, ref_dice = _reference(pred, mask.numpy(), classes)

    task = get_task("segmentation")
    images = torch.arange(len(mask), dtype=torch.float32)[:, None, None, None].expand(-1, 3, 12, 10)
    model = Lookup(logits)
    # the trainer sums batches (here two of them) and finalizes once
    sums = {k: 0.0 for k in task.sum_keys}
    for sl in (slice(0, 3), slice(3, 5)):
        part = task.eval_sums(model, {"pixel_values": images[sl], "mask": mask[sl]})
        sums = {k: sums[k] + part[k] for k in task.sum_keys}
    trainer_metrics = task.finalize(sums)

    items = [{"pixel_values": images[i], "mask": mask[i], "id": f"im{i}"} for i in range(len(mask))]
    dm = DataModule(
        task="segmentation", train=_Items(items), val=_Items(items), info={"num_classes": classes}
    )
    r = evaluate(model, dm, output_dir=tmp_path / "out", progress=False, num_overlays=0, resolution="train")
    m = r["results"][0]["metrics"]

    assert trainer_metrics["val_iou"] == pytest.approx(ref_iou, abs=1e-12)
    assert trainer_metrics["val_dice"] == pytest.approx(ref_dice, abs=1e-12)
    assert m["iou"] == pytest.approx(ref_iou, abs=1e-12) and m["dice"] == pytest.approx(ref_dice, abs=1e-12)
    assert m["ignored_pixels"] == int((mask == IGNORE_INDEX).sum())
    assert m["per_image_ids"] == [f"im{i}" for i in range(len(mask))]


@pytest.mark.parametrize("channels", [1, 3])
def test_loss_does_not_see_ignored_pixels(channels):
    logits, mask, _ = _case(channels, seed=10 + channels)
    task = get_task("segmentation")
    images = torch.arange(len(mask), dtype=torch.float32)[:, None, None, None].expand(-1, 3, 12, 10)
    ignored = (mask == IGNORE_INDEX)[:, None].expand_as(logits)

    def loss_of(lg):
        lg = lg.clone().requires_grad_(True)
        loss = task.loss(Lookup(lg.detach()), {"pixel_values": images, "mask": mask})
        # the same loss as a function of the logits, for the gradient
        direct = task.loss(lambda x: lg[x[:, 0, 0, 0].long()], {"pixel_values": images, "mask": mask})
        (grad,) = torch.autograd.grad(direct, lg)
        return float(loss), grad

    base, grad = loss_of(logits)
    changed, _ = loss_of(torch.where(ignored, logits * -7.0 + 3.0, logits))
    assert changed == pytest.approx(base, rel=1e-6)  # values at ignored pixels do not matter
    assert float(grad[ignored].abs().max()) == 0.0 and float(grad[~ignored].abs().max()) > 0
    # soft Dice alone: ignored pixels leave it unchanged as well
    d0 = soft_dice_loss(logits, mask, ignore_index=IGNORE_INDEX)
    d1 = soft_dice_loss(torch.where(ignored, logits + 5.0, logits), mask, ignore_index=IGNORE_INDEX)
    assert float(d1) == pytest.approx(float(d0), rel=1e-6)


def test_loss_without_ignored_pixels_is_unchanged_arithmetic():
    """Masks without 255 take the same code path as before (the shipped runs stay reproducible)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 8, 8) > 0.5).long()
    task = get_task("segmentation")
    out = task.loss(lambda x: logits, {"pixel_values": None, "mask": mask})
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], mask.float())
    prob = torch.sigmoid(logits[:, 0])
    inter = (prob * mask).flatten(1).sum(1)
    dice = (1 - (2 * inter + 1) / (prob.flatten(1).sum(1) + mask.flatten(1).sum(1) + 1)).mean()
    assert torch.equal(out, bce + dice)


def test_trainer_and_evaluate_perplexities_have_honest_names(tmp_path):
    """The trainer scores trainer.eval_max_batches batches; evaluate.py the whole split."""

    class Uniform(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, labels=None):
            return {"logits": torch.zeros(*input_ids.shape, 5) + self.w}

    torch.manual_seed(0)
    blocks = [{"input_ids": torch.randint(0, 5, (9,))} for _ in range(6)]
    for b in blocks:
        b["labels"] = b["input_ids"]
    task = get_task("lm")
    first_batch = {k: torch.stack([b[k] for b in blocks[:2]]) for k in ("input_ids", "labels")}
    trainer_metrics = task.finalize(task.eval_sums(Uniform(), first_batch))  # a capped evaluation
    dm = DataModule(task="lm", train=_Items(blocks), val=_Items(blocks), info={"vocab_size": 5})
    full = evaluate(Uniform(), dm, output_dir=tmp_path / "lm", progress=False)["results"][0]["metrics"]
    assert "val_ppl" not in trainer_metrics and "perplexity" not in trainer_metrics
    assert trainer_metrics["val_ppl_est"] == pytest.approx(5.0) and trainer_metrics["eval_tokens"] == 2 * 8
    assert full["perplexity"] == pytest.approx(5.0) and full["num_tokens"] == 6 * 8
