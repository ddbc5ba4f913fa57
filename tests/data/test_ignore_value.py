"""Ignored pixels: from the stored mask value through the folder data to evaluate.py's counts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kanzoo.data import build_data, to_label_map
from kanzoo.data.masks import IGNORE_INDEX


def _folder(root, masks, rgb=False):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        Image.fromarray(rng.integers(0, 256, size=(*m.shape[:2], 3), dtype=np.uint8)).save(
            root / "images" / f"im{i}.png"
        )
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
    return root


def _zero_one_masks(n=5, h=16, w=20):
    """0/1 masks with a band of 255 meaning "ignore"."""
    out = []
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        m[3:9, 2 + i : 12 + i] = 1
        m[:, -4:] = 255
        out.append(m)
    return out


def test_zero_one_mask_with_255_keeps_its_meaning():
    m = _zero_one_masks(1)[0]
    lab = to_label_map(m, ignore_value=255)
    assert set(np.unique(lab)) == {0, 1, IGNORE_INDEX}
    assert np.array_equal(lab == 1, m == 1) and np.array_equal(lab == IGNORE_INDEX, m == 255)
    # without ignore_value the automatic threshold sees a 0/255 mask: only the band is foreground
    assert np.array_equal(to_label_map(m) == 1, m == 255)


def test_multiclass_value_map_and_colour_ignore():
    m = np.array([[0, 1, 2], [255, 2, 1]], np.uint8)
    with pytest.raises(ValueError, match=r"unexpected mask values \[255\].*ignore_value"):
        to_label_map(m, mode="multiclass", num_classes=3)
    lab = to_label_map(m, mode="multiclass", num_classes=3, ignore_value=255)
    assert lab.tolist() == [[0, 1, 2], [IGNORE_INDEX, 2, 1]]
    grey = np.array([[0, 128, 255], [10, 128, 0]], np.uint8)
    lab = to_label_map(grey, mode="multiclass", value_map={0: 0, 128: 1, 255: "ignore", 10: "ignore"})
    assert lab.tolist() == [[0, 1, IGNORE_INDEX], [IGNORE_INDEX, 1, 0]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (255, 255, 255)
    lab = to_label_map(
        rgb, mode="multiclass", value_map={"0,0,0": 0, "255,0,0": 1}, ignore_value="255,255,255"
    )
    assert lab.tolist() == [[1, 0], [0, IGNORE_INDEX]]


def test_folder_data_marks_ignored_pixels_in_train_and_original_masks(tmp_path):
    masks = _zero_one_masks()
    root = _folder(tmp_path / "d", masks)
    dm = build_data(
        "segmentation_folder", root=str(root), image_size=[8, 10], ignore_value=255, augment=False
    )
    assert dm.info["ignore_index"] == IGNORE_INDEX and dm.info["num_classes"] == 2
    item = dm.val[0]
    assert set(torch.unique(item["mask"]).tolist()) <= {0, 1, IGNORE_INDEX}
    assert (item["mask"] == IGNORE_INDEX).any()  # nearest resizing keeps the ignore label
    orig = dm.val.original_mask(0).numpy()
    src = masks[int(dm.val.ids[0][2:])]
    assert np.array_equal(orig == IGNORE_INDEX, src == 255) and np.array_equal(orig == 1, src == 1)
    # multi-class folders accept it too; num_classes never reaches the ignore label
    dm3 = build_data(
        "segmentation_folder", root=str(root), mask_mode="multiclass", num_classes=2, ignore_value=255
    )
    assert dm3.info["num_classes"] == 2
    with pytest.raises(ValueError, match=r"num_classes must be an integer in \[2, 255\]"):
        build_data("segmentation_folder", root=str(root), mask_mode="multiclass", num_classes=256)


class AllForeground(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), 4.0) + self.w


def test_evaluate_leaves_ignored_pixels_out_at_original_resolution(tmp_path):
    from kanzoo.eval.runner import evaluate

    masks = _zero_one_masks()
    root = _folder(tmp_path / "d", masks)
    data = {"name": "segmentation_folder", "root": str(root), "image_size": 8, "ignore_value": 255}
    r = evaluate(AllForeground(), data, output_dir=tmp_path / "o", progress=False, num_overlays=1)
    m = r["results"][0]["metrics"]
    assert m["evaluated_resolution"] == "original"
    ids = m["per_image_ids"]
    srcs = [masks[int(i[2:])] for i in ids]
    # all-foreground prediction: IoU = |T| / |valid pixels|, ignored pixels in neither count
    expected = [np.sum(s == 1) / np.sum(s != 255) for s in srcs]
    assert m["per_image_iou"] == pytest.approx(expected)
    assert m["ignored_pixels"] == sum(int(np.sum(s == 255)) for s in srcs)
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["preprocessing"]["ignore_value"] == 255
    assert saved["preprocessing_source"]["ignore_value"] == "explicit"
