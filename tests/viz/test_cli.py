"""``python -m kanzoo.viz``: argument parsing and rendering a saved checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from kanzoo.interpret import edge_importance, kan_modules
from kanzoo.viz.__main__ import main, parse_args, render


def test_parse_args():
    opts, data = parse_args(["checkpoint=runs/x", "layer=blocks.3.*", "max_edges=9", "data.image_size=16"])
    assert opts == {"checkpoint": "runs/x", "layer": "blocks.3.*", "max_edges": 9}
    assert data == {"image_size": 16}
    with pytest.raises(ValueError, match="unknown argument 'colour'"):
        parse_args(["checkpoint=x", "colour=red"])
    with pytest.raises(ValueError, match="checkpoint=<dir|name> is required"):
        parse_args(["layer=*"])
    with pytest.raises(ValueError, match="key=value"):
        parse_args(["checkpoint"])


def test_render_hooks_capture_data_and_glob(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            from kanzoo.layers import KANLinear

            self.block = torch.nn.ModuleDict({"fc1": KANLinear(3, 4), "fc2": KANLinear(4, 2)})

        def forward(self, x):
            return self.block["fc2"](self.block["fc1"](x) * 5.0)

    net = Net()
    x = torch.randn(16, 3)
    files = render(net, layer="block.fc2", batch=x, output=tmp_path, max_edges=3)
    assert list(files) == ["block.fc2"] and files["block.fc2"].exists()
    scores = json.loads((tmp_path / "edge_scores.json").read_text())["block.fc2"]
    with torch.no_grad():
        expected = edge_importance(net.block["fc2"], net.block["fc1"](x) * 5.0).flatten()
    assert [s for _, s in scores["top_edges"]] == pytest.approx(
        expected.sort(descending=True).values[:3].tolist()
    )
    with pytest.raises(ValueError, match=r"no KAN layer matches layer='head\*'; KAN layers: \['block.fc1'"):
        render(net, layer="head*", output=tmp_path)


def test_cli_renders_checkpoint_with_data(tmp_path, capsys):
    from kanzoo.models import create_model

    model = create_model("conv_kan_tiny", in_chans=1)
    model.save_pretrained(tmp_path / "ckpt")
    names = list(kan_modules(model))
    out = tmp_path / "viz"
    assert (
        main(
            [
                f"checkpoint={tmp_path / 'ckpt'}",
                f"layer={names[0]}",
                "data=digits",
                f"output={out}",
                "max_edges=4",
                "batch_size=2",
            ]
        )
        == 0
    )
    assert (out / f"{names[0]}.png").stat().st_size > 1000
    scores = json.loads((out / "edge_scores.json").read_text())
    assert list(scores) == [names[0]]
    assert scores[names[0]]["scored_on"] == "data" and len(scores[names[0]]["top_edges"]) == 4
    top = [s for _, s in scores[names[0]]["top_edges"]]
    assert top == sorted(top, reverse=True)
    assert main([f"checkpoint={tmp_path / 'ckpt'}", "list=true"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in names)


def test_default_output_is_one_folder_per_checkpoint(tmp_path, monkeypatch, capsys):
    """Two runs' checkpoints (both called final/) must not overwrite each other's edge_scores.json."""
    from kanzoo.models import create_model
    from kanzoo.viz.__main__ import default_output

    monkeypatch.chdir(tmp_path)
    ckpts = []
    for run, model_name in (
        ("kan_unet/2026-01-01_10-00-00", "kan_unet_tiny"),
        ("kan_gpt/2026-01-02_11-00-00", "kan_gpt_nano"),
    ):
        ckpt = tmp_path / "runs" / run / "final"
        create_model(model_name).save_pretrained(ckpt)
        ckpts.append(ckpt)
    outs = [default_output(str(c)) for c in ckpts]
    assert outs[0] == Path("viz/kan_unet/2026-01-01_10-00-00/final")
    assert outs[1] == Path("viz/kan_gpt/2026-01-02_11-00-00/final")
    layers = ["token_stages.1.*", "transformer.h.1.mlp.*"]
    for ckpt, layer in zip(ckpts, layers):
        assert main([f"checkpoint={ckpt}", f"layer={layer}", "max_edges=2"]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / outs[0] / "edge_scores.json").read_text())
    second = json.loads((tmp_path / outs[1] / "edge_scores.json").read_text())
    assert all(k.startswith("token_stages.1.") for k in first)
    assert all(k.startswith("transformer.h.1.mlp.") for k in second)
    assert default_output("kan_unet-shapes") == Path("viz/kan_unet-shapes")
