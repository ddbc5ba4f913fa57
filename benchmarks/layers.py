"""Speed and memory of the KAN layers against MLP baselines, measured in ONE run.

    python benchmarks/layers.py            # full table (a few minutes on 2 cores)
    python benchmarks/layers.py --quick    # fewer repetitions
    python benchmarks/layers.py --rational # only the GR-KAN (rational) section

For every shape the candidates are timed interleaved (A, B, C, A, B, C, ...) and the medians are
reported, so load from other processes on a shared machine hits all candidates alike. Ratios are
against (a) ``nn.Linear`` + SiLU of the same shape and (b) a parameter-matched MLP
``in -> h -> out`` with SiLU (``h`` chosen so its parameter count equals the KAN layer's).
"Saved" is the memory kept for backward: the sum of unique storage bytes passed through
``torch.autograd.graph.saved_tensors_hooks`` during one forward.

The GR-KAN section times, interleaved in one run, the rational ``KANLinear`` as KAN-ViT uses it
(``get_linear_layer("kan_rational")``: no base branch) with the fused autograd Function, the same
layer on the plain-autograd formula (``basis.fused = False``, same weights) and an MLP with the
same parameter count; then one KAN-ViT tiny training step (forward+backward of a batch) fused vs
plain autograd, next to its MLP twin ``vit_tiny``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import kanzoo
import kanzoo.layers as kl
from kanzoo.layers import KANConv2d, KANLinear, get_linear_layer
from kanzoo.layers.bases import RationalBasis


class LinearSiLU(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)

    def forward(self, x):
        return F.silu(self.fc(x))


class MatchedMLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class PeerEfficientKAN(nn.Module):
    """Plain-torch KAN in the efficient-kan formulation (written from its published math):
    recursive-free Cox-de Boor basis kept by autograd, two matmuls (base + spline)."""

    def __init__(self, d_in: int, d_out: int, grid_size: int = 5, k: int = 3) -> None:
        super().__init__()
        h = 2.0 / grid_size
        grid = torch.arange(-k, grid_size + k + 1) * h - 1.0
        self.register_buffer("grid", grid.expand(d_in, -1).contiguous())
        self.k = k
        self.base_weight = nn.Parameter(torch.randn(d_out, d_in) / d_in**0.5)
        self.spline_weight = nn.Parameter(torch.randn(d_out, d_in, grid_size + k) * 0.1 / d_in**0.5)
        self.spline_scaler = nn.Parameter(torch.ones(d_out, d_in))

    def forward(self, x):
        g, xe = self.grid, x.unsqueeze(-1)
        b = ((xe >= g[:, :-1]) & (xe < g[:, 1:])).to(x.dtype)
        for p in range(1, self.k + 1):
            b = (xe - g[:, : -(p + 1)]) / (g[:, p:-1] - g[:, : -(p + 1)]) * b[..., :-1] + (
                g[:, p + 1 :] - xe
            ) / (g[:, p + 1 :] - g[:, 1:-p]) * b[..., 1:]
        w = (self.spline_weight * self.spline_scaler.unsqueeze(-1)).flatten(1)
        return F.linear(F.silu(x), self.base_weight) + F.linear(b.flatten(1), w)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(storages.values())


def bench(cands: dict[str, nn.Module], x: torch.Tensor, reps: int, warmup: int = 3):
    """Interleaved medians of forward (no grad) and forward+backward (ms)."""
    xg = x.clone().requires_grad_()
    fwd = {k: [] for k in cands}
    fb = {k: [] for k in cands}

    def step(m, grad: bool):
        if grad:
            m.zero_grad(set_to_none=True)
            xg.grad = None
            m(xg).sum().backward()
        else:
            with torch.no_grad():
                m(x)

    for _ in range(warmup):
        for m in cands.values():
            step(m, False)
            step(m, True)
    for _ in range(reps):
        for name, m in cands.items():
            t = time.perf_counter()
            step(m, False)
            fwd[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            step(m, True)
            fb[name].append(time.perf_counter() - t)
    med = {k: 1e3 * statistics.median(v) for k, v in fwd.items()}
    return med, {k: 1e3 * statistics.median(v) for k, v in fb.items()}


def linear_table(d: int, batch: int, reps: int, bases: list[str]) -> list[tuple]:
    x = torch.randn(batch, d)
    cands: dict[str, nn.Module] = {"nn.Linear+SiLU": LinearSiLU(d, d)}
    kan = {f"KANLinear[{b}]": KANLinear(d, d, basis=b) for b in bases}
    p_kan = n_params(kan["KANLinear[bspline]"])
    hidden = max(1, round((p_kan - d) / (2 * d + 1)))
    cands[f"MLP h={hidden}"] = MatchedMLP(d, hidden, d)
    cands.update(kan)
    cands["peer efficient-kan-style"] = PeerEfficientKAN(d, d)
    fwd, fb = bench(cands, x, reps)
    names = list(cands)
    rows = []
    for name in names:
        rows.append((f"{d}->{d} N={batch}", name, n_params(cands[name]), fwd[name], fb[name],
                     saved_bytes(cands[name], x.clone().requires_grad_()) / 2**20))  # fmt: skip
    return rows


def conv_table(reps: int) -> list[tuple]:
    x = torch.randn(16, 16, 32, 32)
    cands = {"nn.Conv2d 16->16 3x3": nn.Conv2d(16, 16, 3, padding=1),
             "KANConv2d[bspline]": KANConv2d(16, 16, 3, padding=1)}  # fmt: skip
    fwd, fb = bench(cands, x, reps)
    rows = []
    for n, m in cands.items():
        mem = saved_bytes(m, x.clone().requires_grad_()) / 2**20
        rows.append(("conv N=16 32x32", n, n_params(m), fwd[n], fb[n], mem))
    return rows


def set_rational_fused(model: nn.Module, fused: bool) -> nn.Module:
    """Switch every rational basis of ``model`` between the fused Function and plain autograd."""
    for mod in model.modules():
        if isinstance(mod, RationalBasis):
            mod.fused = fused
    return model


def rational_table(d: int, batch: int, reps: int) -> list[tuple]:
    """GR-KAN ``KANLinear`` (fused, plain autograd) vs a parameter-matched MLP, interleaved."""
    x = torch.randn(batch, d)
    fused = get_linear_layer("kan_rational")(d, d)
    plain = set_rational_fused(get_linear_layer("kan_rational")(d, d), False)
    plain.load_state_dict(fused.state_dict())
    p_kan = n_params(fused)
    hidden = max(1, round((p_kan - d) / (2 * d + 1)))
    cands = {f"MLP h={hidden}": MatchedMLP(d, hidden, d), "GR-KAN fused": fused, "GR-KAN autograd": plain}
    fwd, fb = bench(cands, x, reps)
    return [(f"{d}->{d} N={batch}", n, n_params(m), fwd[n], fb[n],
             saved_bytes(m, x.clone().requires_grad_()) / 2**20) for n, m in cands.items()]  # fmt: skip


def vit_table(batch: int, reps: int) -> list[tuple]:
    """One KAN-ViT tiny step (fused vs plain-autograd rationals) next to its MLP twin."""
    torch.manual_seed(0)
    fused = kanzoo.create_model("kan_vit_tiny", num_classes=10)
    plain = set_rational_fused(kanzoo.create_model("kan_vit_tiny", num_classes=10), False)
    plain.load_state_dict(fused.state_dict())
    cands = {"vit_tiny (MLP twin)": kanzoo.create_model("vit_tiny", num_classes=10),
             "kan_vit_tiny fused": fused, "kan_vit_tiny autograd": plain}  # fmt: skip
    x = torch.randn(batch, 3, 32, 32)
    fwd, fb = bench(cands, x, reps, warmup=2)
    return [(f"ViT 32x32 B={batch}", n, n_params(m), fwd[n], fb[n],
             saved_bytes(m, x.clone().requires_grad_()) / 2**20) for n, m in cands.items()]  # fmt: skip


def print_rational(rows: list[tuple]) -> None:
    head = f"{'shape':<18} {'layer':<26} {'params':>8} {'fwd ms':>8} {'fwd+bwd ms':>10} {'saved MiB':>9}"
    print(head + "  ratios")
    print("-" * (len(head) + 60))
    ref: dict[str, tuple] = {}
    for shape, name, p, f, fb, mem in rows:
        ratios = ""
        if name.startswith(("MLP", "vit_tiny")):
            ref[shape] = (f, fb, mem)
        elif shape in ref:
            mf, mfb, mmem = ref[shape]
            ratios = f"vs MLP: fwd {f / mf:4.2f}x f+b {fb / mfb:4.2f}x mem {mem / mmem:4.2f}x"
            if name.endswith("fused"):
                ref[shape + "fused"] = (f, fb, mem)
            elif shape + "fused" in ref:
                nf, nfb, nmem = ref[shape + "fused"]
                ratios += f" | autograd/fused: fwd {f / nf:4.2f}x f+b {fb / nfb:4.2f}x mem {mem / nmem:4.2f}x"
        print(f"{shape:<18} {name:<26} {p:>8} {f:>8.2f} {fb:>10.2f} {mem:>9.2f}  {ratios}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--eager", action="store_true", help="disable torch.compile of the basis kernels")
    ap.add_argument("--rational", action="store_true", help="only the GR-KAN (rational) section")
    args = ap.parse_args()
    if args.eager:
        kl.set_compile(False)
    torch.manual_seed(0)
    reps = 7 if args.quick else 25
    bases = ["bspline", "rbf", "chebyshev", "fourier", "rational"]
    env = os.environ.get("KANZOO_COMPILE", "(unset)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, compile={kl.compile_enabled()}, "
          f"KANZOO_COMPILE={env}, fp32, G=5, k=3, reps={reps}")  # fmt: skip
    if not args.rational:
        main_table(reps, bases)
    print("\nGR-KAN (rational basis, 8 groups, m=5, n=4, no base branch), fused Function vs plain autograd")
    rows = []
    for d, batch in [(64, 4096), (256, 1024)]:
        rows += rational_table(d, batch, reps)
    rows += vit_table(64, max(5, reps // 3))
    print_rational(rows)


def main_table(reps: int, bases: list[str]) -> None:
    rows = []
    for d, batch in [(64, 4096), (256, 1024)]:
        rows += linear_table(d, batch, reps, bases)
    rows += conv_table(reps)
    head = f"{'shape':<18} {'layer':<26} {'params':>8} {'fwd ms':>8} {'fwd+bwd ms':>10} {'saved MiB':>9}"
    head += "  ratios"
    print(head)
    print("-" * (len(head) + 36))
    base = {}
    for shape, name, p, f, fb, mem in rows:
        if name.startswith(("nn.Linear", "nn.Conv2d")):
            base[shape] = ("a", f, fb, mem)
        if name.startswith("MLP"):
            base[shape + "mlp"] = (f, fb, mem)
        ratios = ""
        if shape in base and not name.startswith(("nn.", "MLP")):
            _, bf, bfb, bmem = base[shape]
            ratios = f"vs (a): fwd {f / bf:4.2f}x f+b {fb / bfb:4.2f}x mem {mem / bmem:4.2f}x"
            if shape + "mlp" in base:
                mf, mfb, mmem = base[shape + "mlp"]
                ratios += f" | vs MLP: fwd {f / mf:4.2f}x f+b {fb / mfb:4.2f}x mem {mem / mmem:4.2f}x"
        print(f"{shape:<18} {name:<26} {p:>8} {f:>8.2f} {fb:>10.2f} {mem:>9.2f}  {ratios}")


if __name__ == "__main__":
    main()
