"""Speed and memory of the KAN layers against parameter-matched MLPs (and peers), in ONE run.

    python benchmarks/layers.py                 # linear + conv + GR-KAN tables (a few minutes)
    python benchmarks/layers.py --quick         # fewer repetitions
    python benchmarks/layers.py --peers         # + pykan, kan-gpt, ikan, flashkan, torchkan rows
    python benchmarks/layers.py --threads 1 --timer cpu   # how tables on a busy machine were taken
    python benchmarks/layers.py --dtype bf16    # under bf16 autocast
    python benchmarks/layers.py --only linear   # one section: linear | conv | rational

For every shape the candidates are timed interleaved (A, B, C, A, B, C, ...) and the medians are
reported, so load from other processes hits all candidates alike. Ratios are against a
parameter-matched MLP ``in -> h -> out`` with SiLU, ``h`` chosen so its parameter count equals
the B-spline ``KANLinear``'s. The other bases get the same number of basis functions per input
(rbf ``grid_size = G + k`` centres, chebyshev ``degree = G + k - 1``, fourier ``(G + k) // 2``
harmonics). "saved" is the memory autograd keeps for backward during one forward: unique storages
passed through ``saved_tensors_hooks``, the module's own parameters and buffers excluded (they
exist anyway).

``--peers`` pip-installs the peer packages into a scratch directory (``pip install --no-deps
--target``; see ``benchmarks/_peers.py``) and times their layers in the same interleaved run:
pykan's KANLayer, kan-gpt's efficient-kan layer, ikan's efficient-kan (eager and under
``torch.compile`` as a user would call it), ChebyKAN, FourierKAN and KAT's GR-KAN torch path,
flashkan 0.2; torchkan ships no code on PyPI (reported).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import kanzoo.layers as kl  # noqa: E402
from kanzoo.layers import KANConv2d, KANLinear, get_linear_layer  # noqa: E402
from kanzoo.layers.bases import RationalBasis  # noqa: E402

#: (in = out, batch, grid size G) of the linear table (the issue's shapes).
LINEAR_SHAPES = [(64, 4096, 5), (256, 1024, 5), (1024, 256, 5), (1024, 256, 20)]
BASES = ["bspline", "rbf", "chebyshev", "fourier"]
SPLINE_ORDER = 3


class MatchedMLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


def matched_hidden(n_params: int, d_in: int, d_out: int) -> int:
    """Hidden width of an ``in -> h -> out`` MLP (with biases) with ``n_params`` parameters."""
    return max(1, round((n_params - d_out) / (d_in + d_out + 1)))


def kan_layer(basis: str, d: int, grid: int) -> KANLinear:
    n = grid + SPLINE_ORDER
    kwargs = {
        "bspline": {"grid_size": grid, "spline_order": SPLINE_ORDER},
        "rbf": {"grid_size": n},
        "chebyshev": {"degree": n - 1},
        "fourier": {"num_frequencies": max(1, n // 2)},
    }[basis]
    return KANLinear(d, d, basis=basis, **kwargs)


class Runner:
    """Times candidate modules on one input: forward (no grad) and forward+backward."""

    def __init__(self, *, timer: str, dtype: str, device: str) -> None:
        self.timer, self.dtype, self.device = timer, dtype, device

    def _ctx(self):
        if self.dtype == "bf16":
            return torch.autocast(self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def steps(self, module: nn.Module, x: torch.Tensor):
        xg = x.detach().clone().requires_grad_()

        def fwd():
            with torch.no_grad(), self._ctx():
                module(x)
            self._sync()

        def fwd_bwd():
            module.zero_grad(set_to_none=True)
            xg.grad = None
            with self._ctx():
                y = module(xg)
            y.float().sum().backward()
            self._sync()

        return fwd, fwd_bwd

    def run(self, cands: dict[str, nn.Module], x: torch.Tensor, reps: int) -> dict[str, tuple]:
        steps = {}
        for name, m in cands.items():
            f, fb = self.steps(m, x)
            steps[name + "\0f"], steps[name + "\0fb"] = f, fb
        med = C.interleaved(steps, reps=reps, warmup=2, timer=self.timer)
        out = {}
        for name, m in cands.items():
            with self._ctx():
                mem = C.module_saved_mib(m, x)
            out[name] = (C.n_params(m), med[name + "\0f"], med[name + "\0fb"], mem)
        return out


def adaptive_reps(
    runner: Runner, cands: dict[str, nn.Module], x: torch.Tensor, budget_s: float, cap: int
) -> int:
    """Repetitions so that the shape takes about ``budget_s`` seconds (at least 5)."""
    import time

    t0 = time.perf_counter()
    for m in cands.values():
        for fn in runner.steps(m, x):
            fn()
    one = time.perf_counter() - t0
    return int(max(5, min(cap, budget_s / max(one, 1e-6))))


def linear_rows(args, runner: Runner, peers: bool) -> tuple[list[list], list[str]]:
    rows, notes = [], []
    for d, batch, grid in LINEAR_SHAPES:
        torch.manual_seed(0)
        x = torch.randn(batch, d, device=args.device)
        kan = {f"kanzoo {b}": kan_layer(b, d, grid).to(args.device) for b in BASES}
        hidden = matched_hidden(C.n_params(kan["kanzoo bspline"]), d, d)
        cands: dict[str, nn.Module] = {f"MLP h={hidden}": MatchedMLP(d, hidden, d).to(args.device), **kan}
        shape = f"{d}->{d} N={batch} G={grid}"
        if peers:
            import _peers

            for name, ctor in _peers.linear_peers(d, d, grid, SPLINE_ORDER, grid + SPLINE_ORDER).items():
                reason = _peers.skip_reason(name, batch, d, d, grid, SPLINE_ORDER)
                if reason:
                    notes.append(f"{shape}: {name} {reason}")
                    continue
                try:
                    cands[name] = ctor().to(args.device)
                except Exception as err:  # a peer that fails to build is reported, not fatal
                    notes.append(f"{shape}: {name} failed to build: {type(err).__name__}: {err}")
        for name, seconds in drop_slow(runner, cands, x, args.max_call_s):
            notes.append(f"{shape}: {name} dropped: one fwd+bwd took {seconds:.0f} s (> --max-call-s)")
        reps = args.reps or adaptive_reps(runner, cands, x, budget_s=args.budget, cap=25)
        res = runner.run(cands, x, reps)
        mlp = res[next(iter(cands))]
        shape_rows = []
        for name, (p, f, fb, mem) in res.items():
            shape_rows.append([shape, name, p, f, fb, mem, C.ratio(fb, mlp[2]), C.ratio(mem, mlp[3]), reps])
        rows += shape_rows
        # Partial results as each shape finishes (stderr: stdout keeps only the final tables).
        print(C.markdown_table(HEADER, shape_rows), file=sys.stderr, flush=True)
    return rows, notes


def drop_slow(runner: Runner, cands: dict[str, nn.Module], x: torch.Tensor, limit_s: float):
    """Time one fwd+bwd of every candidate (this also warms up compiled ones: a second call is
    timed for them) and remove those slower than ``limit_s``; yields ``(name, seconds)``."""
    import time

    for name in list(cands)[1:]:  # the reference MLP always stays
        fb = runner.steps(cands[name], x)[1]
        seconds = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            fb()
            seconds = time.perf_counter() - t0
            if seconds <= limit_s:
                break
        if seconds > limit_s:
            del cands[name]
            yield name, seconds


def summarize_linear(rows: list[list]) -> list[str]:
    """Targets: B-spline <= 1.0x the MLP, not behind the best peer, other bases <= 1.1x B-spline,
    saved memory <= 0.5x the MLP's."""
    out = []
    shapes = dict.fromkeys(r[0] for r in rows)
    for shape in shapes:
        sub = {r[1]: r for r in rows if r[0] == shape}
        bs = sub["kanzoo bspline"]
        peers = {k: v for k, v in sub.items() if not k.startswith(("kanzoo", "MLP"))}
        line = f"{shape}: bspline f+b {bs[6]:.2f}x MLP, saved {bs[7]:.2f}x MLP"
        others = ", ".join(f"{b} {sub['kanzoo ' + b][4] / bs[4]:.2f}x" for b in BASES[1:])
        line += f"; vs bspline: {others}"
        if peers:
            best = min(peers, key=lambda k: peers[k][4])
            line += (
                f"; best peer {best} {peers[best][6]:.2f}x MLP (bspline/best {bs[4] / peers[best][4]:.2f}x)"
            )
        out.append(line)
    return out


def conv_rows(args, runner: Runner) -> list[list]:
    """KANConv2d vs nn.Conv2d of the same shape and vs a parameter-matched (wider) nn.Conv2d."""
    rows = []
    for cin, cout, hw, batch, stride in [(16, 16, 32, 16, 1), (12, 12, 8, 32, 1), (24, 48, 4, 32, 2)]:
        torch.manual_seed(0)
        kan = KANConv2d(cin, cout, 3, stride=stride, padding=1).to(args.device)
        m = kan.basis.num_features + 1
        wide = max(1, round(math.sqrt(m)))
        same = nn.Conv2d(cin, cout, 3, stride=stride, padding=1).to(args.device)
        twin = nn.Conv2d(cin * wide, cout * wide, 3, stride=stride, padding=1).to(args.device)
        x = torch.randn(batch, cin, hw, hw, device=args.device)
        xw = torch.randn(batch, cin * wide, hw, hw, device=args.device)
        shape = f"{cin}->{cout} 3x3/{stride} {hw}x{hw} N={batch}"
        reps = args.reps or 15
        res = runner.run({"nn.Conv2d same shape": same, "KANConv2d bspline": kan}, x, reps)
        res.update(runner.run({f"nn.Conv2d {cin * wide}->{cout * wide} (matched)": twin}, xw, reps))
        ref = res[f"nn.Conv2d {cin * wide}->{cout * wide} (matched)"]
        for name, (p, f, fb, mem) in res.items():
            rows.append([shape, name, p, f, fb, mem, C.ratio(fb, ref[2]), C.ratio(mem, ref[3]), reps])
    return rows


def set_rational_fused(model: nn.Module, fused: bool) -> nn.Module:
    """Switch every rational basis of ``model`` between the fused Function and plain autograd."""
    for mod in model.modules():
        if isinstance(mod, RationalBasis):
            mod.fused = fused
    return model


def rational_rows(args, runner: Runner, peers: bool, notes: list[str]) -> list[list]:
    """GR-KAN ``KANLinear`` (fused, plain autograd, KAT's torch path) vs a parameter-matched MLP,
    then one KAN-ViT tiny step next to its MLP twin."""
    import kanzoo

    rows = []
    for d, batch in [(64, 4096), (256, 1024)]:
        torch.manual_seed(0)
        x = torch.randn(batch, d, device=args.device)
        fused = get_linear_layer("kan_rational")(d, d).to(args.device)
        plain = set_rational_fused(get_linear_layer("kan_rational")(d, d).to(args.device), False)
        plain.load_state_dict(fused.state_dict())
        hidden = matched_hidden(C.n_params(fused), d, d)
        cands = {f"MLP h={hidden}": MatchedMLP(d, hidden, d).to(args.device), "GR-KAN fused": fused,
                 "GR-KAN autograd": plain}  # fmt: skip
        if peers:
            import _peers

            peer, note = _peers.grkan_peer(d, d)
            cands["KAT GR-KAN torch path (ikan)"] = peer.to(args.device)
            if note and note not in notes:
                notes.append(note)
        res = runner.run(cands, x, args.reps or 15)
        mlp = res[next(iter(cands))]
        for name, (p, f, fb, mem) in res.items():
            rows.append(
                [f"{d}->{d} N={batch}", name, p, f, fb, mem, C.ratio(fb, mlp[2]), C.ratio(mem, mlp[3]), 0]
            )
    torch.manual_seed(0)
    fused = kanzoo.create_model("kan_vit_tiny", num_classes=10).to(args.device)
    twin = kanzoo.create_model("vit_tiny_matched", num_classes=10).to(args.device)
    x = torch.randn(64, 3, 32, 32, device=args.device)
    res = runner.run(
        {"vit_tiny_matched (twin)": twin, "kan_vit_tiny": fused}, x, max(5, (args.reps or 15) // 3)
    )
    ref = res["vit_tiny_matched (twin)"]
    for name, (p, f, fb, mem) in res.items():
        rows.append(["ViT 32x32 B=64", name, p, f, fb, mem, C.ratio(fb, ref[2]), C.ratio(mem, ref[3]), 0])
    return rows


HEADER = ["shape", "layer", "params", "fwd ms", "fwd+bwd ms", "saved MiB", "f+b / ref", "saved / ref", "reps"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--peers", action="store_true", help="pip-install and time the peer layers")
    ap.add_argument("--peers-dir", default=None, help="reuse this pip --target directory for the peers")
    ap.add_argument("--eager", action="store_true", help="disable torch.compile of the basis kernels")
    ap.add_argument(
        "--only", choices=["linear", "conv", "rational"], action="append", help="run only these sections"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--timer", choices=sorted(C.TIMERS), default="wall")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: under bf16 autocast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=None, help="fixed repetitions (default: adaptive)")
    ap.add_argument("--rational", action="store_true", help="same as --only rational")
    ap.add_argument(
        "--keep-freed-memory", action="store_true",
        help="kanzoo.layers.keep_freed_memory() before timing (glibc: no page faults for blocks > 32 MiB)",
    )  # fmt: skip
    ap.add_argument(
        "--max-call-s", type=float, default=20.0,
        help="drop a candidate whose warmed-up fwd+bwd takes longer than this (reported in the notes)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    args.budget = 8.0 if args.quick else 30.0
    if args.quick and args.reps is None:
        args.reps = 5
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = kl.keep_freed_memory() if args.keep_freed_memory else False
    if args.eager:
        kl.set_compile(False)
    sections = set(args.only or (["rational"] if args.rational else ["linear", "conv", "rational"]))
    runner = Runner(timer=args.timer, dtype=args.dtype, device=args.device)
    notes: list[str] = []
    if args.peers:
        import _peers

        target = _peers.install(args.peers_dir)
        notes.append(f"peers pip-installed (--no-deps) into {target}: {' '.join(_peers.PACKAGES)}")
        notes.append(_peers.torchkan_status())
    print(
        C.machine_line(
            timer=args.timer,
            extra=f"dtype {args.dtype}, kanzoo compile={kl.compile_enabled()}, keep_freed_memory={kept}",
        )
    )
    print()
    if "linear" in sections:
        rows, more = linear_rows(args, runner, args.peers)
        notes += more
        print(f"### KANLinear vs parameter-matched MLP (fwd+bwd; ref = MLP; k={SPLINE_ORDER})\n")
        print(C.markdown_table(HEADER, rows))
        print()
        for line in summarize_linear(rows):
            print("- " + line)
        print()
    if "conv" in sections:
        print("### KANConv2d (bspline G=5) vs nn.Conv2d (ref = parameter-matched wider nn.Conv2d)\n")
        print(C.markdown_table(HEADER, conv_rows(args, runner)))
        print()
    if "rational" in sections:
        print("### GR-KAN (rational, 8 groups, no base branch) vs parameter-matched MLP; KAN-ViT tiny step\n")
        print(C.markdown_table(HEADER[:-1], [r[:-1] for r in rational_rows(args, runner, args.peers, notes)]))
        print()
    for note in notes:
        print("- " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
