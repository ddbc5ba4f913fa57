"""End-to-end evaluation: U-KAN layout folders generated here, checkpoints, bad input, atomic output."""

import json
import math

import numpy as np
import pytest
import torch
from eval_helpers import make_ukan_folder
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from kanzoo.data import DataModule
from kanzoo.eval import ukan_split
from kanzoo.eval.runner import evaluate


class ConstantSeg(nn.Module):
    """Predicts the same logit everywhere: all foreground (value > 0) or all background."""

    def __init__(self, value: float = 5.0, channels: int = 1) -> None:
        super().__init__()
        self.value = value
        self.channels = channels
        self.dummy = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return torch.full((x.shape[0], self.channels, *x.shape[-2:]), self.value) + 0 * self.dummy.sum()


def test_original_resolution_metrics_are_exact(tmp_path):
    _, masks = make_ukan_folder(tmp_path / "inputs")
    data = {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 32}
    out = tmp_path / "out"
    r = evaluate(ConstantSeg(5.0), data, output_dir=out, progress=False, num_overlays=2)
    val_ids = ukan_split(list(masks), seed=2981)[1]
    # all-foreground prediction at the ORIGINAL size: IoU = |T| / (H*W), Dice = 2|T| / (|T| + H*W)
    ious = [masks[i].sum() / masks[i].size for i in val_ids]
    dices = [2 * masks[i].sum() / (masks[i].sum() + masks[i].size) for i in val_ids]
    m = r["results"][0]["metrics"]
    assert m["num_samples"] == len(val_ids) == 2
    assert m["evaluated_resolution"] == "original"
    assert m["iou"] == pytest.approx(np.mean(ious))
    assert m["dice"] == pytest.approx(np.mean(dices))
    tot_t = sum(masks[i].sum() for i in val_ids)
    tot = sum(masks[i].size for i in val_ids)
    assert m["iou_pooled"] == pytest.approx(tot_t / tot)
    assert m["precision"] == pytest.approx(tot_t / tot) and m["recall"] == 1.0
    assert m["specificity"] == 0.0  # no background pixel predicted
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["results"][0]["metrics"]["iou"] == pytest.approx(m["iou"])
    assert saved["split"] == "val" and saved["protocol"] == "per_image"
    assert (out / "report.md").read_text().count("![overlay") == 2
    assert len(list(out.glob("overlay_*.png"))) == 2
    assert not list(tmp_path.glob(".out.tmp-*"))  # the temporary folder was moved, not left behind


def test_train_resolution_and_ukan_protocol(tmp_path):
    make_ukan_folder(tmp_path / "inputs", n=12)
    data = {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 32}
    r = evaluate(
        ConstantSeg(5.0), data, output_dir=tmp_path / "o", protocol="ukan", progress=False, num_overlays=0
    )
    m = r["results"][0]["metrics"]
    assert r["resolution"] == "train"
    from kanzoo.eval.runner import resolve_data

    dm, _ = resolve_data(data, protocol="ukan")
    targets = [dm.val[i]["mask"].numpy() for i in range(len(dm.val))]
    assert [dm.val[i]["id"] for i in range(len(dm.val))] == ukan_split([f"case ({i})" for i in range(12)])[1]
    assert all(t.shape == (32, 32) for t in targets)
    # one batch (3 images <= 8): pooled IoU = sum|T| / all pixels, with U-KAN's 1e-5 smoothing
    iou_b = (sum(t.sum() for t in targets) + 1e-5) / (len(targets) * 32 * 32 + 1e-5)
    assert m["ukan_iou"] == pytest.approx(iou_b)
    assert m["ukan_dice"] == pytest.approx(2 * iou_b / (1 + iou_b))
    assert m["iou"] == pytest.approx(np.mean([t.sum() / t.size for t in targets]))


def test_checkpoint_dir_and_compare(tmp_path):
    from kanzoo.models import create_model

    make_ukan_folder(tmp_path / "inputs", n=6)
    a = create_model("unet_tiny").eval()
    a.save_pretrained(tmp_path / "unet")
    b = create_model("unet_tiny", conv_channels=[4, 8, 16]).eval()
    b.save_pretrained(tmp_path / "unet_small_width")
    data = {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 64}
    r = evaluate(
        str(tmp_path / "unet"),
        data,
        compare=str(tmp_path / "unet_small_width"),
        output_dir=tmp_path / "cmp",
        progress=False,
        num_overlays=1,
    )
    first, second = r["results"]
    assert first["metrics"]["params"] == sum(p.numel() for p in a.parameters())
    assert second["metrics"]["params"] == sum(p.numel() for p in b.parameters())
    assert first["metrics"]["params"] != second["metrics"]["params"]
    assert first["metrics"]["samples_per_s"] > 0 and second["metrics"]["samples_per_s"] > 0
    header = r["table"].splitlines()[0]
    assert "unet" in header and "unet_small_width" in header
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| metric | unet | unet_small_width |" in report


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _seg_dm(masks, num_classes=2):
    items = [
        {"pixel_values": torch.zeros(3, 8, 8), "mask": torch.as_tensor(m, dtype=torch.long), "id": f"img{i}"}
        for i, m in enumerate(masks)
    ]
    return DataModule(
        task="segmentation", train=_Items(items), val=_Items(items), info={"num_classes": num_classes}
    )


def test_bad_input_leaves_nothing_written(tmp_path):
    out = tmp_path / "never"
    bad = np.zeros((8, 8), int)
    bad[2, 2] = 3  # a value a binary mask cannot hold
    with pytest.raises(ValueError, match="mask of img1"):
        evaluate(ConstantSeg(), _seg_dm([np.zeros((8, 8), int), bad]), output_dir=out, progress=False)
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no temporary folder either
    # a classification model on segmentation data
    clf = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    clf.config = type("C", (), {"task": "classification"})()
    with pytest.raises(ValueError, match="classification model but data"):
        evaluate(clf, _seg_dm([np.zeros((8, 8), int)]), output_dir=out, progress=False)
    # a 4-class model on binary data
    with pytest.raises(ValueError, match="predicts 4 classes"):
        evaluate(ConstantSeg(channels=4), _seg_dm([np.zeros((8, 8), int)]), output_dir=out, progress=False)
    assert not out.exists()


def test_existing_output_dir_keeps_other_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    evaluate(ConstantSeg(), _seg_dm([np.ones((8, 8), int)]), output_dir=out, progress=False, num_overlays=0)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["results"][0]["metrics"]["iou"] == 1.0


def test_benchmark_errors_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        evaluate(ConstantSeg(), {"name": "kvasir_seg", "root": str(tmp_path)}, progress=False)
    msg = str(err.value)
    assert str(tmp_path / "kvasir_seg") in msg and "masks/0/" in msg and "images/" in msg
    root, _ = make_ukan_folder(tmp_path / "inputs", n=4)
    (root / "masks" / "0" / "case (2)_mask.png").unlink()
    with pytest.raises(ValueError, match=r"case \(2\)\.png has no mask: expected .*case \(2\)_mask\.png"):
        evaluate(ConstantSeg(), {"name": "busi", "root": str(tmp_path / "inputs")}, progress=False)


def test_size_mismatch_names_the_file(tmp_path):
    root, _ = make_ukan_folder(tmp_path / "inputs", n=4)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "0" / "case (1)_mask.png")
    with pytest.raises(ValueError, match=r"case \(1\)"):
        evaluate(ConstantSeg(), {"name": "busi", "root": str(tmp_path / "inputs")}, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_classification_and_lm(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(40, 1, 4, 4)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    items = [{"pixel_values": x[i], "labels": y[i]} for i in range(40)]
    dm = DataModule(task="classification", train=_Items(items), val=_Items(items), info={"num_classes": 2})
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = 1.0  # logit_1 - logit_0 = sum(x): predicts exactly the label
        model[1].bias.zero_()
    r = evaluate(model, dm, output_dir=tmp_path / "cls", progress=False)
    m = r["results"][0]["metrics"]
    assert m["top1"] == 1.0 and m["per_class_accuracy"] == [1.0, 1.0]
    assert len(list((tmp_path / "cls").glob("confusion_*.png"))) == 1

    class Uniform(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            return {"logits": torch.zeros(*input_ids.shape, 7) + self.w}

    class Tok:
        def decode(self, ids):
            return "".join("abcdefg"[i] for i in ids)

    blocks = [{"input_ids": torch.randint(0, 7, (6,))} for _ in range(5)]
    for b in blocks:
        b["labels"] = b["input_ids"]
    lm = DataModule(
        task="lm", train=_Items(blocks), val=_Items(blocks), info={"vocab_size": 7, "tokenizer": Tok()}
    )
    r = evaluate(Uniform(), lm, output_dir=tmp_path / "lm", progress=False)
    m = r["results"][0]["metrics"]
    assert m["perplexity"] == pytest.approx(7.0)
    assert m["bits_per_byte"] == pytest.approx(math.log2(7))  # one byte per token
    assert m["num_tokens"] == 5 * 5


def test_benchmark_mask_with_unexpected_values_names_the_file(tmp_path):
    root, _ = make_ukan_folder(tmp_path / "inputs", n=5)
    val_id = ukan_split([f"case ({i})" for i in range(5)])[1][0]
    m = np.zeros((40, 56), np.uint8)
    m[3:9, 3:9] = 128  # a grey level: neither background nor lesion
    m[20:30, 20:30] = 255
    size = Image.open(root / "images" / f"{val_id}.png").size
    Image.fromarray(m).resize(size, Image.NEAREST).save(root / "masks" / "0" / f"{val_id}_mask.png")
    with pytest.raises(
        ValueError, match=rf"{val_id.replace('(', r'[(]').replace(')', r'[)]')}_mask\.png holds unexpected"
    ):
        evaluate(ConstantSeg(), {"name": "busi", "root": str(tmp_path / "inputs"), "image_size": 32},
                 output_dir=tmp_path / "o", progress=False)  # fmt: skip
    assert not (tmp_path / "o").exists()
