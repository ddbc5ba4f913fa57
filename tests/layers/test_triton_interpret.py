"""The Triton KANLinear kernels, run on CPU tensors by Triton's interpreter (TRITON_INTERPRET=1).

The interpreter must be chosen before triton is first imported, so the cases
(``triton_interpret_cases.py``) run in a fresh interpreter process with the variable set.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

HERE = Path(__file__).resolve().parent


def test_triton_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "KANZOO_COMPILE": "0", "PYTHONPATH": str(HERE.parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(HERE / "triton_interpret_cases.py"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.split("\n")[-2]
