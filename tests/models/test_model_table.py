"""`python -m kanzoo.models`: meta-device counts equal real ones, and the README table is its output."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kanzoo.models import FAMILY_MODULES, _table_cache, list_models
from kanzoo.models.__main__ import format_table, measure, model_row, table_rows
from kanzoo.models._table_cache import TableCache

ROOT = Path(__file__).resolve().parents[2]


def _readme_table() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| model | task | twin of | params | input | FLOPs/sample |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


# One model per family and path: CNN and U-Net (meta), ViT (meta; attention: meta matmuls vs the
# CPU kernel's formula), GPT (meta build, CPU forward today).
@pytest.mark.parametrize("name", ["cnn_tiny", "unet_tiny", "vit_tiny", "gpt_nano"])
def test_meta_counts_equal_counts_of_a_real_build(name):
    fast = measure(name)
    real = measure(name, real=True)
    assert real[3] == "cpu" and fast[3] != "cpu"
    assert fast[:3] == real[:3], (fast, real)


def test_attention_is_counted_on_the_cpu_path_too():
    """torch has no flop formula for the CPU attention kernel; the table adds the standard one
    (QK^T and AV: 2 * 2 * L^2 * width per block), which the meta device counts as matmuls."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kanzoo.models import create_model

    model = create_model("vit_tiny").eval()
    counter = FlopCounterMode(display=False)  # torch's own formulas only
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, 32, 32))
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    attention = len(model.blocks) * 2 * (2 * tokens * tokens * model.embed_dim)
    assert measure("vit_tiny", real=True)[1] == counter.get_total_flops() + attention
    assert measure("vit_tiny")[1] == counter.get_total_flops() + attention


def test_readme_table_lists_every_model_and_matches_the_meta_rows():
    table = _readme_table()
    names = [re.match(r"\| (\S+) \|", line).group(1) for line in table[2:]]
    assert names == list_models(), "README model table and the registry list different models"
    rows = {}
    for name in names:
        try:  # rows that need a real build are checked by the slow test below
            params, flops, described, how = measure(name, fallback=False)
        except Exception:
            continue
        rows[name] = model_row(name, measured=(params, flops, described, how))
    assert rows, "no model could be measured on the meta device"
    expected = format_table(list(rows.values()), markdown=True).splitlines()[2:]
    got = [line for line in table[2:] if re.match(r"\| (\S+) \|", line).group(1) in rows]
    assert got == expected


@pytest.mark.slow
def test_readme_table_is_what_the_command_prints():
    out = subprocess.run(
        [sys.executable, "-m", "kanzoo.models", "--markdown"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=3000,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines() == _readme_table()


# --- the shape memo and the on-disk cache ---------------------------------------------------------

_CHEAP = "pinn_tiny*"  # two small models of one family (kan_pinn), measured in well under a second


@pytest.mark.parametrize("name", ["kan_vit_tiny", "kan_unet_tiny", "kan_gpt_nano"])
def test_the_shape_memo_answers_repeats_and_changes_no_count(name):
    """The same model counted on the meta device without the memo (torch's own meta kernels for
    every operator) and with it: equal parameters and FLOPs, and the memo did answer operators."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kanzoo.models import count_parameters, create_model
    from kanzoo.models.__main__ import _custom_flops, _example_input
    from kanzoo.models._meta_memo import MetaShapeMemo

    torch.manual_seed(0)
    with torch.device("meta"):
        model = create_model(name).eval()
        x, _ = _example_input(name, model)
    plain = FlopCounterMode(display=False, custom_mapping=_custom_flops())
    with torch.no_grad(), plain:
        model(x)
    memo = MetaShapeMemo()
    hits = []
    for _ in range(2):  # the second pass repeats every operator of the first
        memoized = FlopCounterMode(display=False, custom_mapping=_custom_flops())
        with torch.no_grad(), memo, memoized:
            model(x)
        assert memoized.get_total_flops() == plain.get_total_flops() > 0
        hits.append(memo.hits)
    assert hits[1] - hits[0] >= len(memo._table) > 0  # every remembered operator was answered
    params, flops, _, how = measure(name)
    assert (params, flops, how) == (count_parameters(model), plain.get_total_flops(), "meta")


def _cache(tmp_path, monkeypatch, edited: dict[str, str] | None = None) -> TableCache:
    """A cache at ``tmp_path``; ``edited`` replaces the hashes of some source files (an edit)."""
    if edited:
        real = _table_cache._source_hashes
        monkeypatch.setattr(_table_cache, "_source_hashes", lambda root: {**real(root), **edited})
    return TableCache(path=tmp_path / "model_table.json", families=FAMILY_MODULES)


def _count_measurements(monkeypatch) -> list[str]:
    import kanzoo.models.__main__ as table

    measured, real_row = [], table.model_row
    monkeypatch.setattr(table, "model_row", lambda name, **kw: measured.append(name) or real_row(name, **kw))
    return measured


def test_cached_rows_are_reused_and_equal_a_fresh_measurement(tmp_path, monkeypatch):
    measured = _count_measurements(monkeypatch)
    first = table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch))
    assert [r["name"] for r in first] == list_models(_CHEAP) and measured == list_models(_CHEAP)
    assert first == [model_row(n) for n in list_models(_CHEAP)]
    measured.clear()
    again = table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch))  # a new process, same file
    assert again == first and measured == []


def test_an_edit_remeasures_only_the_rows_whose_code_changed(tmp_path, monkeypatch):
    measured = _count_measurements(monkeypatch)
    table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch))
    measured.clear()
    # another family's module changed: these rows stay
    table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch, {"models/kan_vit.py": "edited"}))
    assert measured == []
    # their own family module changed: measured again
    table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch, {"models/kan_pinn.py": "edited"}))
    assert measured == list_models(_CHEAP)
    measured.clear()
    # a shared file (the layers) changed: every row is measured again
    table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch, {"layers/kan_linear.py": "edited"}))
    assert measured == list_models(_CHEAP)


@pytest.mark.parametrize("content", [b"{not json", b'{"format": 1, "rows": [1, 2]}', b"\xff\xfe", b""])
def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path, monkeypatch, content):
    path = tmp_path / "model_table.json"
    path.write_bytes(content)
    measured = _count_measurements(monkeypatch)
    rows = table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch))
    assert measured == list_models(_CHEAP) and [r["name"] for r in rows] == measured
    import json

    assert set(json.loads(path.read_text())["rows"]) == set(list_models(_CHEAP))
    measured.clear()
    assert table_rows(_CHEAP, cache=_cache(tmp_path, monkeypatch)) == rows and measured == []


def test_a_valid_whole_table_prints_without_torch_or_models_and_an_edit_invalidates_it(tmp_path, monkeypatch):
    """A complete cached table (here two made-up rows) is printed by ``python -m kanzoo.models``
    without importing torch or any family; after an edit of a source file it is not used."""
    cache = _cache(tmp_path, monkeypatch)
    rows = {
        n: {"name": n, "task": "lm", "twin_of": "", "params": p, "input": "8 tokens", "flops": 2 * p}
        | {"how": "meta"}
        for n, p in (("zz_made_up_b", 1234), ("zz_made_up_a", 5_000_000))
    }
    for n, row in rows.items():
        cache.put(n, "k", row)
    cache.save(list(rows), {n: "k" for n in rows})
    assert [r["name"] for r in TableCache(path=cache.path, families=FAMILY_MODULES).table()] == sorted(rows)
    assert TableCache(path=cache.path, families=FAMILY_MODULES).table("*_b") == [rows["zz_made_up_b"]]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kanzoo.models", "--markdown"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KANZOO_CACHE": str(tmp_path)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[2:] == [
        "| zz_made_up_a | lm |  | 5.00M | 8 tokens | 10.00M |",
        "| zz_made_up_b | lm |  | 1.23K | 8 tokens | 2.47K |",
    ]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "kanzoo.models" in imported and "torch" not in imported and "kanzoo.models.kan_vit" not in imported
    edited = _cache(tmp_path, monkeypatch, {"layers/kan_linear.py": "edited"})
    assert edited.table() is None
