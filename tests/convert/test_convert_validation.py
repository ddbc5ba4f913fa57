"""Importers and ``python -m kanzoo.convert`` through the checkpoint validation layer.

Issue 15 item 8 (NaN/constant/decreasing knot grids, NaN/inf and integer weights refused, with an
``allow_nonfinite=True`` opt-out for weights), item 10 (corrupt files: one line naming the file)
and item 13 (the convert CLI: one ``error:`` line, exit status 2, nothing left behind).
"""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from test_kan_gpt_import import peer_state_dict
from test_kat_import import _kat_state_dict
from test_ukan_import import _ukan_state_dict

from kanzoo.convert.kan_gpt import from_kan_gpt
from kanzoo.convert.kat import from_kat
from kanzoo.convert.ukan import from_ukan

GRID = "transformer.h.0.mlp.c_fc.layers.0.grid"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("kind", ["nan", "constant", "decreasing", "inf", "fp8", "int"])
def test_kan_gpt_bad_knot_grids_are_refused_even_with_allow_nonfinite(kind):
    sd = peer_state_dict(n_layer=1, n_embd=8)
    grid = sd[GRID].clone()
    if kind == "nan":
        grid[0, 3] = float("nan")
    elif kind == "inf":
        grid[1, -1] = float("inf")
    elif kind == "constant":
        grid[:] = 0.5
    elif kind == "fp8":
        grid = grid.to(torch.float8_e5m2)
    elif kind == "int":
        grid = grid.to(torch.int64)
    else:
        grid = grid.flip(-1)
    sd[GRID] = grid
    for allow in (False, True):
        with pytest.raises(ValueError, match="knot grid") as err:
            from_kan_gpt(sd, n_head=1, allow_nonfinite=allow)
        assert GRID in _one_line(err)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_kan_gpt_nonfinite_weights_are_refused_unless_allowed(bad):
    sd = peer_state_dict(n_layer=1, n_embd=8)
    key = "transformer.h.0.attn.c_attn.layers.0.spline_weight"
    sd[key] = sd[key].clone()
    sd[key].view(-1)[5] = bad
    with pytest.raises(ValueError, match="NaN/inf") as err:
        from_kan_gpt(sd, n_head=1)
    assert key in _one_line(err) and "allow_nonfinite=True" in str(err.value)
    model = from_kan_gpt(sd, n_head=1, allow_nonfinite=True)
    assert not torch.isfinite(model.state_dict()["transformer.h.0.attn.c_attn.spline_weight"]).all()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_importers_refuse_integer_weights_naming_the_peer_key(dtype):
    sd = peer_state_dict(n_layer=1, n_embd=8)
    key = "transformer.h.0.ln_1.weight"
    sd[key] = sd[key].to(dtype)
    with pytest.raises(ValueError, match="floating-point") as err:
        from_kan_gpt(sd, n_head=1)
    assert key in _one_line(err)

    usd = _ukan_state_dict()
    ukey = "encoder1.conv.0.weight"
    usd[ukey] = usd[ukey].to(dtype)
    with pytest.raises(ValueError) as err:
        from_ukan(usd)
    assert ukey in _one_line(err)

    ksd = _kat_state_dict()
    kkey = "blocks.0.norm1.weight"
    ksd[kkey] = ksd[kkey].to(dtype)
    with pytest.raises(ValueError, match="floating-point") as err:
        from_kat(ksd, num_heads=4)
    assert kkey in _one_line(err)


def test_ukan_and_kat_refuse_nan_weights_and_ukan_bad_grids():
    usd = _ukan_state_dict()
    grid = next(k for k in usd if k.endswith(".grid"))
    usd[grid] = usd[grid].flip(-1).clone()
    with pytest.raises(ValueError, match="knot grid") as err:
        from_ukan(usd)
    assert grid in _one_line(err)

    ksd = _kat_state_dict()
    key = "blocks.1.mlp.act1.weight_numerator"
    ksd[key] = ksd[key].clone()
    ksd[key].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf") as err:
        from_kat(ksd, num_heads=4)
    assert key in _one_line(err)
    assert from_kat(ksd, num_heads=4, allow_nonfinite=True) is not None


@pytest.mark.parametrize("payload", ["empty", "truncated", "pickle", "random"])
def test_corrupt_safetensors_inputs_are_one_line_naming_the_file(tmp_path, payload):
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in peer_state_dict(n_layer=1, n_embd=8).items()}, str(good))
    data = good.read_bytes()
    path = tmp_path / "peer.safetensors"
    path.write_bytes(
        {
            "empty": b"",
            "truncated": data[: len(data) - 7],
            "pickle": pickle.dumps({"a": 1}),
            "random": bytes(range(256)) * 8,
        }[payload]
    )
    for importer in (from_kan_gpt, from_ukan, from_kat):
        with pytest.raises(ValueError) as err:
            importer(path)
        assert str(path) in _one_line(err), importer


def test_convert_cli_subprocess_corrupt_input_one_line_exit_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "peer.safetensors"
    src.write_bytes(b"\x00" * 3)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "kanzoo.convert", "kan_gpt", str(src), str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(src) in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peer.safetensors"]


def test_architecture_errors_about_a_file_name_the_file(tmp_path):
    """Found by the fuzz module: shape-reading refusals named keys but not the file."""
    sd = peer_state_dict(n_layer=1, n_embd=8)
    sd["lm_head.layers.0.spline_weight"] = sd["lm_head.layers.0.spline_weight"].reshape(-1)
    path = tmp_path / "peer.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ValueError, match="lm_head") as err:
        from_kan_gpt(path, n_head=1)
    assert _one_line(err).startswith(f"from_kan_gpt: {path}: ")
    with pytest.raises(ValueError, match="missing key") as err:
        from_ukan(path)
    assert str(path) in _one_line(err)
