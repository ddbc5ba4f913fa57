"""python -m kanzoo.convert: option parsing, refusals, and a real conversion round trip."""

from __future__ import annotations

import pytest

from kanzoo._cli import run_main
from kanzoo.convert.__main__ import IMPORTERS, convert, main, parse_options


def _run(argv: list[str]) -> int:
    """``python -m kanzoo.convert`` in-process: the exit status ``run_main`` gives."""
    try:
        return run_main(main, argv)
    except SystemExit as stop:
        return int(stop.code)


def test_parse_options_reads_literals_and_strings():
    opts = parse_options(["n_head=6", "eps=1e-5", "dims=[256, 320, 512]", "name=kat_tiny", "flag=True"])
    assert opts == {"n_head": 6, "eps": 1e-5, "dims": [256, 320, 512], "name": "kat_tiny", "flag": True}
    for bad in (["n_head"], ["=3"], ["a-b=1"]):
        with pytest.raises(ValueError, match="key=value"):
            parse_options(bad)


def test_convert_refuses_unknown_kind_missing_file_and_existing_output(tmp_path):
    src = tmp_path / "model.pth"
    with pytest.raises(ValueError, match="unknown importer 'nope'"):
        convert("nope", src, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="model.pth"):
        convert("kat", src, tmp_path / "out")
    (tmp_path / "out").mkdir()
    src.write_bytes(b"")
    with pytest.raises(FileExistsError, match="already exists"):
        convert("kat", src, tmp_path / "out")


def test_main_reports_errors_in_one_line(tmp_path, capsys):
    assert _run(["kat", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint file not found") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_main_usage_errors_and_unknown_options_are_one_line_exit_2(tmp_path, capsys):
    src = tmp_path / "model.pth"
    src.write_bytes(b"x")
    for argv, expect in (
        (["nope", str(src), str(tmp_path / "o")], "invalid choice: 'nope'"),
        (["kat"], "the following arguments are required"),
        (["kat", str(src), str(tmp_path / "o"), "bogus_option=3"], "unknown option(s) ['bogus_option']"),
        (["kat", str(src), str(tmp_path / "o"), "not-an-option"], "key=value"),
    ):
        assert _run(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and expect in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


def test_every_importer_is_importable():
    import importlib

    for module, name in IMPORTERS.values():
        assert callable(getattr(importlib.import_module(module), name))


def test_cli_writes_a_checkpoint_that_reloads_with_the_same_outputs(tmp_path, capsys):
    """The CLI plumbing end to end (importer parity itself is tested against the peer forwards)."""
    import torch

    import kanzoo
    from kanzoo.convert.ukan import ukan_key

    torch.manual_seed(0)
    model = kanzoo.create_model("kan_unet_ukan_tiny", num_classes=1).eval()
    peer = {ukan_key(k): v for k, v in model.state_dict().items()}
    torch.save({"state_dict": peer}, tmp_path / "model.pth")
    out = tmp_path / "converted"
    assert _run(["ukan", str(tmp_path / "model.pth"), str(out), "num_classes=1"]) == 0
    assert "wrote" in capsys.readouterr().out and not (tmp_path / "converted.partial").exists()
    again = kanzoo.from_pretrained(out).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=1e-6)
    assert _run(["ukan", str(tmp_path / "model.pth"), str(out)]) == 2  # refuses to overwrite
