"""A fresh virtual environment with only the core install builds and trains a KANLinear.

The venv has no access to the global site-packages. It is seeded, offline, with exactly the
installed distributions that kanzoo's core requirements resolve to (torch and its own
requirements, numpy), linked rather than copied; kanzoo itself goes in as a wheel built from this
checkout, installed with ``--no-deps --no-index``. ``pip check`` then confirms that every
requirement of what is in the venv is met, and the check script confirms that none of the extras'
packages can be imported there.
"""

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib.util, sys
import torch, kanzoo
assert kanzoo.__file__.startswith(sys.prefix), kanzoo.__file__   # the wheel, not the checkout
extras = ("timm", "torchvision", "transformers", "accelerate", "datasets", "hydra", "safetensors",
          "scipy", "matplotlib", "wandb", "sklearn", "statsmodels")
present = [m for m in extras if importlib.util.find_spec(m) is not None]
assert not present, f"not a core-only environment: {present}"

from kanzoo.layers import KANConv2d, KANLinear
torch.manual_seed(0)
x = torch.rand(512, 2) * 2 - 1
y = torch.sin(3 * x[:, :1]) * x[:, 1:]
model = torch.nn.Sequential(KANLinear(2, 8), KANLinear(8, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for step in range(300):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
assert KANConv2d(3, 4, 3, padding=1)(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)
try:
    kanzoo.create_model("kan_gpt")
except kanzoo._extras.MissingExtraError as err:
    print("missing extra:", err)
else:
    raise AssertionError("create_model worked without the [models] extra")
print(f"trained: mse {losses[0]:.4f} -> {losses[-1]:.5f}")
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_closure() -> list[metadata.Distribution]:
    """The installed distributions kanzoo's core requirements resolve to (markers evaluated here)."""
    from packaging.requirements import Requirement

    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo, seen = [Requirement(r) for r in core], {}
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen:
            continue
        dist = installed.get(name)
        assert dist is not None, f"{req} is not installed here, cannot seed the venv"
        assert dist.version in req.specifier or not req.specifier, f"{req}: installed {dist.version}"
        seen[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return list(seen.values())


def _seed(site: Path, dists: list[metadata.Distribution]) -> None:
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)


@pytest.mark.slow
def test_core_only_venv_builds_and_trains_a_kan_linear(tmp_path):
    pytest.importorskip("packaging")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    dists = _core_closure()
    names = sorted(_norm(d.metadata["Name"]) for d in dists)
    assert "torch" in names and "numpy" in names and "timm" not in names, names
    _seed(site, dists)

    # kanzoo: a wheel of this checkout (copied, so the build leaves nothing behind in it)
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs", "__pycache__", ".*cache")
    shutil.copytree(ROOT, src, ignore=skip)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src], check=True)
    (wheel,) = wheels.glob("kanzoo-*.whl")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], check=True)
    check = subprocess.run([*pip, "--python", python, "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(KANZOO_COMPILE="0", HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [python, "-I", "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1200
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "pip install 'kanzoo[models]'" in run.stdout and "trained: mse" in run.stdout, run.stdout
    print(f"core venv ({len(dists)} distributions: {', '.join(names)}):\n{run.stdout}")
