"""Peer KAN layers from PyPI, installed at benchmark time into a scratch directory.

``pip install --no-deps --target <scratch> ...`` puts the peers' own released code on
``sys.path`` for this process only; nothing is copied into the repository. Each peer is wrapped
as an ``nn.Module`` ``(N, in) -> (N, out)`` built the way its README builds it.

torchkan is listed because the issue asks for it, but its PyPI releases (0.1.0 and 0.1.1) are
wheels without any Python module; the benchmark reports that instead of a timing.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from collections.abc import Callable

import torch
from torch import nn

#: What gets pip-installed (torchinfo is an unconditional import of ikan's layer files).
PACKAGES = ["pykan", "kan-gpt", "ikan", "flashkan==0.2.0", "torchkan", "torchinfo"]


def install(target: str | None = None) -> str:
    """pip-install the peers (no dependencies) into ``target`` (a new temp dir by default)."""
    target = target or tempfile.mkdtemp(prefix="kanzoo-peers-")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, *PACKAGES]
    subprocess.run(cmd, check=True)
    if target not in sys.path:
        sys.path.insert(0, target)
    importlib.invalidate_caches()
    return target


class _First(nn.Module):
    """pykan's KANLayer returns ``(y, preacts, postacts, postspline)``: keep ``y``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]


class _GRKAN(nn.Module):
    """KAT's GR-KAN as its torch path builds it: group-rational activation, then a Linear."""

    def __init__(self, act: nn.Module, d_in: int, d_out: int) -> None:
        super().__init__()
        self.act, self.fc = act, nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.fc(self.act(x.unsqueeze(0)).squeeze(0))


def _module(name: str):
    return importlib.import_module(name)


def linear_peers(
    d_in: int, d_out: int, grid: int, k: int, n_basis: int
) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of the B-spline/Chebyshev/Fourier peer layers for one shape."""
    peers: dict[str, Callable[[], nn.Module]] = {
        "pykan KANLayer": lambda: _First(
            _module("kan.KANLayer").KANLayer(in_dim=d_in, out_dim=d_out, num=grid, k=k, device="cpu")
        ),
        "kan-gpt efficient-kan": lambda: _module("kan_gpt.efficient_kan.model").KANLinear(
            d_in, d_out, grid_size=grid, spline_order=k
        ),
        "ikan efficient-kan": lambda: _module("ikan.KAN").KANLinear(
            d_in, d_out, grid_size=grid, spline_order=k
        ),
        "ikan efficient-kan +compile": lambda: torch.compile(
            _module("ikan.KAN").KANLinear(d_in, d_out, grid_size=grid, spline_order=k)
        ),
        "flashkan 0.2 KANLayer": lambda: _module("flashkan").KANLayer(
            d_in, d_out, grid_size=grid, spline_order=k
        ),
        "ikan ChebyKAN": lambda: _module("ikan.ChebyKAN").ChebyKANLinear(d_in, d_out, degree=n_basis - 1),
        "ikan FourierKAN": lambda: _module("ikan.FourierKAN").FourierKANLinear(
            d_in, d_out, num_frequencies=max(1, n_basis // 2)
        ),
    }
    return peers


def grkan_peer(d_in: int, d_out: int) -> tuple[nn.Module, str | None]:
    """KAT's GR-KAN (``ikan.kat_1dgroup_torch.KAT_Group_Torch``, 8 groups, GELU init) + Linear,
    and a note when its initialisation had to be supplied.

    ikan's wheel does not ship the ``init.json`` its constructor reads, so the module comes out
    without coefficients (it prints a message and ``forward`` fails). The benchmark then gives it
    the same degree-(5, 4) GELU fit kanzoo uses (``fit_rational``), in KAT's parameter shapes
    (numerator ``(1, 6)`` shared by the groups, denominator ``(groups, 4)``): the values do not
    change the work its forward and backward do."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        act = _module("ikan.kat_1dgroup_torch").KAT_Group_Torch(num_groups=8, mode="gelu")
    note = None
    if not hasattr(act, "weight_numerator"):
        from kanzoo.layers.bases.rational import fit_rational

        num, den = fit_rational("gelu", 5, 4)
        act.weight_numerator = nn.Parameter(torch.tensor([num], dtype=torch.float32))
        act.weight_denominator = nn.Parameter(torch.tensor([den] * act.num_groups, dtype=torch.float32))
        note = (
            "KAT GR-KAN (ikan): the wheel ships no init.json, so its coefficients were set to "
            "kanzoo's degree-(5, 4) GELU fit (same shapes; the timing does not depend on the values)"
        )
    return _GRKAN(act, d_in, d_out), note


def torchkan_status() -> str:
    """Why torchkan has no row: its wheels ship no importable module."""
    for name in ("torchkan", "TorchKAN"):
        try:
            importlib.import_module(name)
            return f"torchkan: importable as {name!r} but exposes no documented layer"
        except ImportError:
            continue
    return "torchkan: not timed: the PyPI wheel (0.1.0 and 0.1.1) contains no Python module"


def skip_reason(name: str, batch: int, d_in: int, d_out: int, grid: int, k: int) -> str | None:
    """A reason to skip a peer at a shape where it would not fit this machine."""
    if name.startswith("pykan"):
        # pykan materialises several (N, out, in) tensors (and (N, in, out, G+k) in its spline).
        gib = batch * d_in * d_out * 4 * 8 / 2**30
        if gib > 4:
            return f"skipped: materialises (N, out, in) tensors, ~{gib:.0f} GiB at this shape"
    return None
