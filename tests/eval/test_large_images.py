"""Bounded memory for large images: capped overlays, chunked counting, one resize per image.

Peak memory itself is measured outside the test suite (see the evaluation notes in the README);
these tests pin down that the memory-saving paths give exactly the numbers of the plain ones.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from kanzoo.eval import evaluators
from kanzoo.eval.evaluators import overlay_size, upsampled_labels
from kanzoo.eval.runner import evaluate
from kanzoo.eval.segmentation import logits_to_labels, segmentation_scores


def _folder(root, n=4, h=300, w=220):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        m = np.zeros((h, w), np.uint8)
        m[40 + 10 * i : 200, 30 : 150 + 5 * i] = 255
        img[m > 0] //= 3
        Image.fromarray(img).save(root / "images" / f"big{i}.png")
        Image.fromarray(m).save(root / "masks" / f"big{i}.png")
    return root


class Smooth(nn.Module):
    """Logits from the smoothed image: irregular regions, a real test for IoU and HD95."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return -F.avg_pool2d(x.mean(1, keepdim=True), 5, 1, 2) * 4 + self.w


def test_upsampled_labels_equal_resizing_the_whole_map():
    torch.manual_seed(0)
    for k in (1, 3):
        logits = torch.randn(k, 16, 12)
        ref = logits_to_labels(F.interpolate(logits[None], size=(301, 203), mode="bilinear"), threshold=0.3)
        old = evaluators.CHUNK_PIXELS
        try:
            evaluators.CHUNK_PIXELS = 500  # many row chunks
            got = upsampled_labels(logits, (301, 203), threshold=0.3)
        finally:
            evaluators.CHUNK_PIXELS = old
        assert got.dtype == np.uint8 and np.array_equal(got, ref[0].numpy())


def test_chunked_scoring_equals_one_pass_and_overlays_are_capped(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    data = {"name": "segmentation_folder", "root": str(root), "image_size": 32, "val_fraction": 0.5}
    kw = dict(progress=False, num_overlays=2, overlay_max_side=100)
    monkeypatch.setattr(evaluators, "CHUNK_PIXELS", 1000)  # every image is counted in ~66 chunks
    r = evaluate(Smooth(), data, output_dir=tmp_path / "chunked", **kw)
    m = r["results"][0]["metrics"]
    assert m["evaluated_resolution"] == "original"
    # the same images scored in one pass by the public function
    from kanzoo.data import build_data

    dm = build_data("segmentation_folder", **{k: v for k, v in data.items() if k != "name"})
    preds, targets = [], []
    with torch.no_grad():
        for i in range(len(dm.val)):
            x = dm.val[i]["pixel_values"][None]
            up = F.interpolate(Smooth()(x), size=(300, 220), mode="bilinear", align_corners=False)
            preds.append(logits_to_labels(up)[0].numpy())
            targets.append(dm.val.original_mask(i).numpy())
    ref = segmentation_scores(preds, targets, ignore_index=255)
    for key in ("iou", "dice", "iou_pooled", "hd95", "precision", "recall"):
        assert m[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0.05 < m["iou"] < 0.95  # a non-trivial prediction
    for png in (tmp_path / "chunked").glob("overlay_*.png"):
        with Image.open(png) as im:
            # panels of at most 100 px, enlarged x2 to the minimum height of 160, plus the caption
            assert im.height <= 2 * 100 + 30 and im.width <= 2 * (3 * 100 + 8)


def test_overlay_size():
    assert overlay_size((4000, 3000), 1024) == (1024, 768)
    assert overlay_size((50, 40), 1024) == (50, 40)
    assert overlay_size((5000, 1), 100) == (100, 1)
