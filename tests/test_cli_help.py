"""`--help`/`-h` prints usage and exits 0 on the `python -m kanzoo.*` entry points this file covers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("module", "flag"), [("kanzoo.convert", "--help"), ("kanzoo.convert", "-h"), ("kanzoo.data", "--help")]
)
def test_help_prints_usage(module, flag):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", module, flag], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"usage: python -m {module}"), out.stdout[:500]
    assert out.stderr.strip() == "", out.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_models_help_prints_usage(flag, capsys):
    # in-process: `python -m kanzoo.models` imports the whole zoo before main() runs
    from kanzoo.models.__main__ import main

    with pytest.raises(SystemExit) as info:
        main([flag])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m kanzoo.models") and "--markdown" in out


def test_data_help_lists_the_datasets(capsys):
    from kanzoo.data.__main__ import main

    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "nuclei" in out and "busi" in out
