"""The checkpoint validation layer (kanzoo.models._validate) through kanzoo.from_pretrained.

Issue 15 items 4 (config sizes checked against the weights before building), 8 (dtypes and NaN/inf
refused, with an opt-out) and 10 (corrupt files and malformed configs: one line naming the file).
Both loading paths are covered: KAN-GPT (transformers' loader) and a KanzooModel family.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import kanzoo
from kanzoo.models import _validate as V
from kanzoo.models import pretrained_dir

GPT = "kan_gpt-shakespeare"  # KanGPTForCausalLM, loaded through transformers
VISION = "cnn-digits"  # a KanzooModel (ConvKAN family) with BatchNorm integer buffers
FAMILIES = [GPT, VISION]
HANG_GUARD_S = 60.0  # a refusal must come at once; main allocated for minutes


def _copy(name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(pretrained_dir() / name, out)
    return out


def _edit_config(ckpt: Path, **changes) -> None:
    path = ckpt / "config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _edit_weights(ckpt: Path, edit) -> None:
    path = ckpt / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def _refused(ckpt: Path, *, names: str, match: str = "", **kwargs) -> str:
    """Load ``ckpt``; assert one ValueError/OSError line naming the file ``names`` (and ``match``)."""
    start = time.perf_counter()
    with pytest.raises((ValueError, OSError)) as info:
        kanzoo.from_pretrained(ckpt, **kwargs)
    assert time.perf_counter() - start < HANG_GUARD_S
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(ckpt / names) in msg, msg
    assert match in msg, msg
    return msg


def _first_float(state: dict, *, suffix: str = "weight") -> str:
    return next(k for k, v in sorted(state.items()) if v.is_floating_point() and k.endswith(suffix))


# -- item 4: config sizes against the weights file ----------------------------------------------


@pytest.mark.parametrize(
    "name,field,value",
    [
        (GPT, "n_layer", 1_000_000),
        (GPT, "n_layer", 10**12),
        (GPT, "n_embd", 10**12),
        (GPT, "vocab_size", 10**9),
        (VISION, "depths", [1, 1, 10**6]),
        (VISION, "base_width", 10**9),
    ],
)
def test_huge_config_sizes_are_refused_before_building(tmp_path, name, field, value):
    ckpt = _copy(name, tmp_path)
    _edit_config(ckpt, **{field: value})
    msg = _refused(ckpt, names="config.json")
    assert "model.safetensors" in msg  # says which weights the sizes were checked against


@pytest.mark.parametrize("name,field,value", [(GPT, "n_embd", 32), (VISION, "base_width", 8)])
def test_config_that_describes_other_shapes_names_tensor_and_file(tmp_path, name, field, value):
    ckpt = _copy(name, tmp_path)
    _edit_config(ckpt, **{field: value})
    _refused(ckpt, names="model.safetensors", match="shape mismatches")


def test_skeleton_build_stops_early_and_allocates_nothing():
    header = {"w": V.TensorInfo("F32", (4, 4))}
    with pytest.raises(V.SkeletonTooLarge, match="stopped building"):
        V.build_skeleton(
            lambda: torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10**6)]),
            header,
            source="w.safetensors",
            config_source="config.json",
        )
    model = V.build_skeleton(lambda: torch.nn.Linear(4, 4), header, source="w", config_source="c")
    assert model is not None and model.weight.is_meta


# -- item 8: dtypes and finiteness ------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, name, bad):
    ckpt = _copy(name, tmp_path)
    holder = {}

    def poison(state):
        holder["key"] = key = _first_float(state)
        state[key] = state[key].clone()
        state[key].view(-1)[0] = bad

    _edit_weights(ckpt, poison)
    msg = _refused(ckpt, names="model.safetensors", match="NaN/inf")
    assert holder["key"] in msg and "allow_nonfinite=True" in msg
    model = kanzoo.from_pretrained(ckpt, allow_nonfinite=True)
    value = dict(model.named_parameters())[holder["key"]].view(-1)[0]
    assert not torch.isfinite(value)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.float8_e4m3fn])
def test_integer_bool_and_fp8_tensors_for_float_parameters_are_refused(tmp_path, name, dtype):
    ckpt = _copy(name, tmp_path)
    holder = {}

    def cast(state):
        holder["key"] = key = _first_float(state)
        state[key] = state[key].to(dtype)

    _edit_weights(ckpt, cast)
    msg = _refused(ckpt, names="model.safetensors")
    assert holder["key"] in msg and ("expected" in msg)


def test_integer_buffers_still_load(tmp_path):
    ckpt = _copy(VISION, tmp_path)
    state = load_file(str(ckpt / "model.safetensors"))
    assert any(not v.is_floating_point() for v in state.values())  # BatchNorm num_batches_tracked
    model = kanzoo.from_pretrained(ckpt)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


# -- item 10: corrupt weights files and malformed configs --------------------------------------


def _corruptions(path: Path) -> dict[str, bytes]:
    good = path.read_bytes()
    rng = torch.Generator().manual_seed(0)
    return {
        "empty": b"",
        "short": good[:5],
        "truncated": good[: len(good) // 2],
        "header_only": good[: 8 + int.from_bytes(good[:8], "little")],
        "random": bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist()),
        "pickle": pickle.dumps({"weight": [1.0, 2.0]}),
        "zip": b"PK\x03\x04" + good[4:200],
        "huge_header_length": (2**62).to_bytes(8, "little") + good[8:],
        "header_not_json": good[:8] + b"\xff" * (len(good) - 8),
    }


@pytest.mark.parametrize("name", FAMILIES)
def test_corrupt_safetensors_files_are_one_line_naming_the_file(tmp_path, name):
    good = pretrained_dir() / name / "model.safetensors"
    for case, payload in _corruptions(good).items():
        ckpt = _copy(name, tmp_path / case)
        (ckpt / "model.safetensors").write_bytes(payload)
        msg = _refused(ckpt, names="model.safetensors")
        assert "expected" in msg or "truncated" in msg, (case, msg)


def test_pickles_are_recognised_not_unpickled(tmp_path):
    ckpt = _copy(VISION, tmp_path)
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"w": 1}))
    _refused(ckpt, names="model.safetensors", match="pickle")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(
    "text",
    [
        "[1, 2, 3]",
        '"a string"',
        "null",
        "3.5",
        "{not json",
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50 + "1" + "}" * 50,
        "\xff\xfe",
    ],
    ids=["list", "string", "null", "number", "broken", "deep_list", "deep_object", "bytes"],
)
def test_malformed_config_json_is_one_line_naming_the_file(tmp_path, name, text):
    ckpt = _copy(name, tmp_path)
    (ckpt / "config.json").write_bytes(text.encode("latin-1"))
    _refused(ckpt, names="config.json")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(
    "changes",
    [
        {"kanzoo_model": ["kan_gpt"]},
        {"kanzoo_model": {"a": 1}},
        {"kanzoo_model": 3},
        {"dtype": "os.system"},
        {"torch_dtype": "__import__('os')"},
    ],
    ids=["key_list", "key_dict", "key_int", "dtype_call", "torch_dtype_call"],
)
def test_malformed_config_fields_are_one_line_naming_the_file(tmp_path, name, changes):
    ckpt = _copy(name, tmp_path)
    _edit_config(ckpt, **changes)
    _refused(ckpt, names="config.json")


@pytest.mark.parametrize(
    "name,field,value",
    [
        (GPT, "n_layer", "abc"),
        (GPT, "n_embd", 64.5),
        (GPT, "n_head", True),
        (GPT, "layer_kwargs", [1, 2]),
        (VISION, "base_width", "12"),
        (VISION, "depths", 3),
        (VISION, "act", 7),
        (VISION, "base_width", -4),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_refused(tmp_path, name, field, value):
    ckpt = _copy(name, tmp_path)
    _edit_config(ckpt, **{field: value})
    _refused(ckpt, names="config.json")


def test_nan_in_config_json_is_refused(tmp_path):
    ckpt = _copy(VISION, tmp_path)
    path = ckpt / "config.json"
    path.write_text(path.read_text().replace('"drop_rate": 0.0', '"drop_rate": NaN'))
    _refused(ckpt, names="config.json", match="non-finite")


def test_kan_gpt_shape_mismatch_names_the_key_and_file(tmp_path):
    ckpt = _copy(GPT, tmp_path)

    def shrink(state):
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:64].clone()

    _edit_weights(ckpt, shrink)
    msg = _refused(ckpt, names="model.safetensors", match="transformer.wpe.weight")
    assert "(64, 64)" in msg and "(128, 64)" in msg


@pytest.mark.parametrize("name", FAMILIES)
def test_shipped_checkpoints_still_load_unchanged(tmp_path, name):
    ckpt = _copy(name, tmp_path)
    model = kanzoo.from_pretrained(ckpt)
    state = load_file(str(ckpt / "model.safetensors"))
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_key_mismatch_report_is_one_line_in_peer_names():
    expected = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(2)}
    found = {"a.weight": torch.zeros(3, 3), "c": torch.zeros(1)}
    report = V.key_mismatches(expected, found, name=lambda k: "peer." + k)
    assert report.missing == ["peer.b.bias"] and report.unexpected == ["peer.c"]
    msg = report.message("file.pth", "Model")
    assert msg == (
        "file.pth does not fit Model: missing keys (1): peer.b.bias; unexpected keys (1): peer.c; "
        "shape mismatches (1): peer.a.weight: checkpoint (3, 3) vs model (2, 3)"
    )
    assert not V.key_mismatches(expected, dict(expected))
