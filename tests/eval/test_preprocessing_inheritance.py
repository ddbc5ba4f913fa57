"""A data override keeps the preprocessing recorded with the checkpoint; metrics.json says what was used."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kanzoo.eval import cli
from kanzoo.eval.sources import resolve_eval_data


def _folder(root, n=6, h=48, w=40):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"c{i}.png"
        )
        m = np.zeros((h, w), np.uint8)
        m[5:20, 4 + i : 20 + i] = 255
        Image.fromarray(m).save(root / "masks" / f"c{i}.png")
    return root


def _checkpoint(tmp_path, data_cfg):
    """A saved unet whose train_summary.json records ``data_cfg`` (as the trainer writes it)."""
    from kanzoo.models import create_model

    torch.manual_seed(0)
    ckpt = tmp_path / "runs" / "unet" / "t0" / "final"
    create_model("unet_tiny", num_classes=1).save_pretrained(ckpt)
    summary = {"model": "unet_tiny", "task": "segmentation", "config": {"data": data_cfg}}
    (ckpt / "train_summary.json").write_text(json.dumps(summary))
    return ckpt


def test_data_override_inherits_the_checkpoint_input_size(tmp_path, capsys):
    train_root = _folder(tmp_path / "train_data")
    other = _folder(tmp_path / "other_data", h=56, w=36)
    recorded = {"name": "segmentation_folder", "root": str(train_root), "image_size": [64, 32], "in_chans": 3}
    ckpt = _checkpoint(tmp_path, recorded)
    out = tmp_path / "eval"
    args = [f"checkpoint={ckpt}", "data=segmentation_folder", f"data.root={other}", f"output_dir={out}"]
    assert cli.main([*args, "progress=false", "num_overlays=0"]) == 0
    assert "preprocessing: image_size=[64, 32]" in capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["preprocessing"]["image_size"] == [64, 32]
    assert saved["preprocessing_source"]["image_size"] == "checkpoint"
    assert saved["preprocessing"]["in_chans"] == 3 and saved["preprocessing"]["mean"] is not None
    m = saved["results"][0]["metrics"]
    assert len(m["per_image_ids"]) == m["num_samples"] == len(m["per_image_iou"])
    assert set(m["per_image_ids"]) <= {f"c{i}" for i in range(6)}
    # the model really gets 64x32 inputs
    dm, _, prov = resolve_eval_data(str(ckpt), {"name": "segmentation_folder", "root": str(other)})
    assert tuple(dm.val[0]["pixel_values"].shape) == (3, 64, 32)
    # a field the user sets explicitly wins
    out2 = tmp_path / "eval2"
    args2 = [f"checkpoint={ckpt}", "data=segmentation_folder", f"data.root={other}", "data.image_size=32"]
    assert cli.main([*args2, f"output_dir={out2}", "progress=false", "num_overlays=0"]) == 0
    saved2 = json.loads((out2 / "metrics.json").read_text())
    assert saved2["preprocessing"]["image_size"] == 32
    assert saved2["preprocessing_source"]["image_size"] == "explicit"


def test_without_data_the_recorded_data_is_used_and_can_be_changed(tmp_path):
    root = _folder(tmp_path / "d")
    ckpt = _checkpoint(tmp_path, {"name": "segmentation_folder", "root": str(root), "image_size": 32})
    out = tmp_path / "e"
    assert cli.main([f"checkpoint={ckpt}", f"output_dir={out}", "progress=false", "num_overlays=0"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"] == "segmentation_folder" and saved["preprocessing"]["image_size"] == 32
    # data.<key>= without data= changes one field of the recorded data
    out2 = tmp_path / "e2"
    argv = [f"checkpoint={ckpt}", "data.image_size=[32,64]", f"output_dir={out2}", "progress=false"]
    assert cli.main([*argv, "num_overlays=0"]) == 0
    saved2 = json.loads((out2 / "metrics.json").read_text())
    assert saved2["preprocessing"]["image_size"] == [32, 64]
    assert saved2["preprocessing_source"]["image_size"] == "explicit"


def test_lm_override_uses_the_tokenizer_saved_with_the_checkpoint(tmp_path):
    from kanzoo.data import CharTokenizer, load_tokenizer
    from kanzoo.eval.runner import evaluate
    from kanzoo.models import create_model

    tok = CharTokenizer(chars=list("\n abcdefgh"))
    ckpt = tmp_path / "lm"
    torch.manual_seed(0)
    create_model("gpt_nano", vocab_size=tok.vocab_size).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    data_cfg = {"name": "text", "path_or_hub_name": "unused.txt", "tokenizer": "char", "block_size": 16}
    (ckpt / "train_summary.json").write_text(json.dumps({"task": "lm", "config": {"data": data_cfg}}))
    corpus = tmp_path / "other.txt"
    corpus.write_text("hhh ggg fff\n" * 60)  # its own alphabet ("\\n fgh") would number "f" 2, not 7
    r = evaluate(str(ckpt), {"name": "text", "path_or_hub_name": str(corpus)}, output_dir=tmp_path / "o",
                 progress=False)  # fmt: skip
    assert r["preprocessing"]["block_size"] == 16 and r["preprocessing_source"]["block_size"] == "checkpoint"
    assert str(ckpt) in r["preprocessing"]["tokenizer"]
    assert r["preprocessing_source"]["tokenizer"] == "checkpoint"
    dm, _, _ = resolve_eval_data(str(ckpt), {"name": "text", "path_or_hub_name": str(corpus)})
    assert dm.val[0]["input_ids"].shape == (16,)
    assert dm.info["tokenizer"].encode("f") == load_tokenizer(ckpt).encode("f") == [7]


def test_module_and_datamodule_are_used_as_given(tmp_path):
    from kanzoo.eval.runner import evaluate

    root = _folder(tmp_path / "d")
    from kanzoo.data import build_data

    dm = build_data("segmentation_folder", root=str(root), image_size=32)

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.zeros(x.shape[0], 1, *x.shape[-2:]) - 1 + self.w

    r = evaluate(Zero(), dm, output_dir=tmp_path / "o", progress=False, num_overlays=0)
    assert r["preprocessing"]["image_size"] == 32 and r["preprocessing_source"]["image_size"] == "data"
    with pytest.raises(ValueError, match="no data given and none recorded"):
        evaluate(Zero(), None, output_dir=tmp_path / "o2", progress=False)
