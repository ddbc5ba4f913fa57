"""`python -m kanzoo.models`: meta-device counts equal real ones, and the README table is its output."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kanzoo.models import list_models
from kanzoo.models.__main__ import format_table, measure, model_row

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
