"""Discover a formula with a small KAN: f(x, y) = exp(sin(pi x) + y^2), as in the KAN paper.

Steps: train a 2-5-1 KAN with the sparsity penalty, prune it (hidden neurons really removed), refine
the grid and retrain, replace every edge by its best symbolic fit (still trainable), fine-tune the
symbolic parameters and print the formula. Pictures go to ``--output`` (default ``symbolic_fit/``).

    python examples/symbolic_fit.py [--output DIR] [--seed 0]

Takes about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from kanzoo.interpret import KANNetwork, auto_symbolic, prune, stack_inputs, to_sympy
from kanzoo.viz import plot_edges, plot_network


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)[:, None]


def rmse(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((net(x) - y) ** 2).mean().sqrt())


def train_sparse(net: KANNetwork, x: torch.Tensor, y: torch.Tensor, *, steps: int, lam: float) -> None:
    """Adam on MSE + lam * (KAN-paper L1 + entropy penalty of every layer)."""
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss, h = 0.0, x
        for layer in net:
            loss = loss + lam * layer.regularization_loss(h)
            h = layer(h)
        (loss + ((h - y) ** 2).mean()).backward()
        opt.step()


def train_lbfgs(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, grid: bool) -> None:
    """LBFGS on MSE; with ``grid`` the B-spline knots follow the data every 5 steps."""
    opt = None
    for step in range(steps):
        if opt is None or (grid and step % 5 == 0 and step < 15):
            if grid:
                for layer, inputs in zip(net, stack_inputs(list(net), x)):
                    layer.update_grid(inputs)
            opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")

        def closure(opt=opt):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="symbolic_fit", help="folder for the pictures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.output)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a network this small runs fastest on one thread

    x = torch.rand(1000, 2) * 2 - 1
    y = target(x)
    net = KANNetwork(widths=[2, 5, 1], grid_size=5)
    train_sparse(net, x, y, steps=400, lam=0.1)
    print(f"2-5-1 KAN with sparsity penalty: RMSE {rmse(net, x, y):.4f}")
    plot_network(net, x, in_names=["x", "y"], out_names=["f"], path=out / "network_trained.png")

    report = prune(net, 0.03, x)
    print(
        f"pruned to widths {net.widths}: params {report.params_before} -> {report.params_after}, "
        f"RMSE {rmse(net, x, y):.4f}"
    )
    train_lbfgs(net, x, y, steps=20, grid=True)
    print(f"retrained pruned KAN: RMSE {rmse(net, x, y):.4f}")
    plot_network(net, x, in_names=["x", "y"], out_names=["f"], path=out / "network_pruned.png")
    plot_edges(net[0], x, path=out / "edges_layer0.png")

    for k, i, j, fit in auto_symbolic(net, x):
        print(f"layer {k} edge {i}->{j}: {fit}")
    print(f"all edges symbolic: RMSE {rmse(net, x, y):.4f}")
    train_lbfgs(net, x, y, steps=5, grid=False)  # the symbolic parameters are trainable
    print(f"after fine-tuning the symbolic parameters: RMSE {rmse(net, x, y):.4f}")
    plot_network(net, x, in_names=["x", "y"], out_names=["f"], path=out / "network_symbolic.png")
    (formula,) = to_sympy(net, input_names=["x", "y"], digits=3)
    print(f"f(x, y) = {formula}")
    print(f"pictures in {out}/")


if __name__ == "__main__":
    main()
