"""The core install and its extras: pyproject.toml and kanzoo._extras agree; a missing extra is
named in one line at the point where it is needed."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kanzoo import _extras
from kanzoo._extras import EXTRAS, MissingExtraError, missing_extra_error, require_extra

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _expanded(extra: str) -> set[str]:
    """Distribution names an extra installs, following ``kanzoo[...]`` self-references."""
    out: set[str] = set()
    for req in PYPROJECT["project"]["optional-dependencies"][extra]:
        if req.startswith("kanzoo["):
            for inner in req[len("kanzoo[") : req.index("]")].split(","):
                out |= _expanded(inner.strip())
        else:
            out.add(_name(req))
    return out


def test_core_is_what_the_layers_need():
    assert sorted(_name(r) for r in PYPROJECT["project"]["dependencies"]) == ["numpy", "torch"]
    torch_req = next(r for r in PYPROJECT["project"]["dependencies"] if _name(r) == "torch")
    assert ">=2.14.1" in torch_req and "==" not in torch_req  # a range, from the oldest tested
    pins = (ROOT / "constraints.txt").read_text()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
    assert '-c constraints.txt' in (ROOT / ".ci" / "run").read_text()


def test_extras_table_matches_pyproject():
    optional = PYPROJECT["project"]["optional-dependencies"]
    assert set(EXTRAS) | {"all", "dev"} == set(optional)
    for extra, modules in EXTRAS.items():
        wanted = {_extras.DISTRIBUTIONS.get(m, m).lower().replace("_", "-") for m in modules}
        assert wanted <= _expanded(extra), (extra, wanted - _expanded(extra))
    everything = set().union(*(_expanded(e) for e in EXTRAS))
    assert everything <= _expanded("all") <= _expanded("dev")
    assert {"statsmodels", "wandb"} <= _expanded("all")
    assert {"hypothesis", "pytest"} <= _expanded("dev")
    assert "stardist" not in everything | _expanded("dev")


def test_missing_package_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(MissingExtraError) as info:
        require_extra("models", needed_by="kanzoo.models")
    message = str(info.value)
    assert "\n" not in message and "timm" in message and "pip install 'kanzoo[models]'" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, ImportError)

    err = ModuleNotFoundError("No module named 'sympy'", name="sympy")
    better = missing_extra_error(err, needed_by="kanzoo.interpret.library")
    assert "kanzoo[interpret]" in str(better) and better.name == "sympy"
    err = ModuleNotFoundError("No module named 'datasets.load'", name="datasets.load")
    assert "kanzoo[train]" in str(missing_extra_error(err, needed_by="kanzoo.data.text"))
    # scipy is in [eval] and [interpret]: the error names the extra of the part that needs it
    err = ModuleNotFoundError("No module named 'scipy'", name="scipy")
    assert "kanzoo[eval]" in str(missing_extra_error(err, needed_by="kanzoo.eval.segmentation"))
    assert "kanzoo[interpret]" in str(missing_extra_error(err, needed_by="kanzoo.interpret.library"))
    # not an optional dependency of kanzoo: no rewording
    assert missing_extra_error(ModuleNotFoundError("x", name="nonexistent_pkg")) is None


def test_lazy_import_point_reports_the_extra_in_a_fresh_process():
    code = """
import sys
sys.modules["timm"] = None            # as if the [models] extra were not installed
import kanzoo
layer = kanzoo.KANLinear(3, 2)        # the core still works
try:
    kanzoo.create_model("kan_vit_tiny")
except ValueError as err:             # MissingExtraError is a ValueError: entry points print one line
    print(type(err).__name__, err)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert line.startswith("MissingExtraError kanzoo.models needs timm"), line
    assert "pip install 'kanzoo[models]'" in line


def _third_party_imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"kanzoo", "__future__"}}


# What a subpackage may import beyond its own extra: optional integrations with their own extra.
# triton: torch's own dependency on Linux; the layers' Triton path is off where it is missing.
_ALSO = {
    "kanzoo/train": {"wandb"},
    "kanzoo/eval": {"wandb"},
    "kanzoo/data": {"statsmodels", "pandas"},
    "kanzoo/layers": {"triton"},
}


def test_every_import_of_the_package_and_the_tests_is_provided_by_an_extra():
    """Each third-party module kanzoo imports comes with the core install or with the extra of its
    subpackage (or another named extra); each one the tests import comes with ``[dev]``."""
    core = {"torch", "numpy"}
    local = {p.stem for p in (ROOT / "tests").rglob("*")}  # test helpers imported by name
    dev = {n.lower().replace("_", "-") for n in _expanded("dev")}
    for path in sorted((ROOT / "kanzoo").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        sub = "kanzoo." + rel.split("/")[1] if rel.count("/") > 1 else None
        allowed = set(core) | set().union(*(v for k, v in _ALSO.items() if rel.startswith(k)))
        if sub in _extras.SUBPACKAGE_EXTRA:
            allowed |= _extras._closure(_extras.SUBPACKAGE_EXTRA[sub])
        else:
            allowed |= set().union(*EXTRAS.values())
        missing = _third_party_imports(path) - allowed
        assert not missing, f"{rel} imports {sorted(missing)}, which its extra does not provide"
    for path in sorted((ROOT / "tests").rglob("*.py")) + [ROOT / "train.py", ROOT / "evaluate.py"]:
        imported = _third_party_imports(path) - local
        names = {**_extras.DISTRIBUTIONS, "kan": "pykan", "yaml": "pyyaml"}  # import name -> distribution
        wanted = {names.get(m, m).lower().replace("_", "-") for m in imported}
        missing = wanted - dev - core - {"triton"}  # triton: see _ALSO
        assert not missing, f"{path.relative_to(ROOT)} imports {sorted(missing)}; [dev] does not install them"
