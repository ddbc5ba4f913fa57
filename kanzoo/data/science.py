"""Scientific data: samples of named formulas (data fitting) and PDE problems (physics-informed training).

``feynman`` (``task="regression"``): inputs drawn uniformly from each variable's range, targets the
formula's value. A subset of the Feynman equations the KAN paper fits (in the dimensionless forms
it uses where the original has many variables) plus the paper's toy function. Inputs are mapped
affinely from their ranges to ``[-1, 1]`` (the KAN layers' default grid); ``info["input_ranges"]``
and ``info["input_names"]`` undo that for symbolic formulas. Items: ``x (d,)``, ``y (1,)``.

``poisson`` / ``heat`` (``task="pde"``): collocation points for a PDE with a closed-form solution.

* ``poisson``: ``-Δu = 2π² sin(πx) sin(πy)`` on ``[-1, 1]²``, ``u = 0`` on the boundary;
  exact ``u = sin(πx) sin(πy)`` (the KAN paper's example).
* ``heat``: ``u_t = α u_xx`` on ``x ∈ [-1, 1]``, ``t ∈ [0, 1]``, ``u(±1, t) = 0``,
  ``u(x, 0) = sin(πx)``; exact ``u = exp(-απ²t) sin(πx)``.

Train items pair an interior point with a boundary (or initial-condition) point: ``coords (d,)``,
``boundary_coords (d,)``, ``boundary_values (1,)``; batches are drawn from a pool of
``num_interior`` random points, so every step sees fresh collocation points until the pool is
exhausted. Val and test items are the centres of a uniform grid of cells, with the exact solution: ``coords``,
``target (1,)``. Every batch also carries ``pde`` (the problem name) and ``boundary_weight``, so the
loss (``kanzoo.train.tasks_science.PDE``) knows which residual to take. No solution values are used
for training, only the PDE, its boundary/initial condition and its source term.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from .base import DataModule, register_dataset

__all__ = [
    "FORMULAS",
    "PDES",
    "Formula",
    "PDEProblem",
    "derivatives",
    "get_pde",
    "list_formulas",
]


# --------------------------------------------------------------------------------------------- formulas


@dataclass(frozen=True)
class Formula:
    """A named formula ``y = f(x_1, ..., x_d)`` with the range each variable is sampled from.

    Attributes:
        name: Identifier (Feynman equation number or a short name).
        variables: ``(name, lo, hi)`` per input variable.
        fn: ``f`` on a ``(N, d)`` float64 numpy array of raw (unscaled) inputs, returning ``(N,)``.
        expression: The formula as text (sympy syntax, in the variable names).
        description: What it is.
    """

    name: str
    variables: tuple[tuple[str, float, float], ...]
    fn: Callable[[np.ndarray], np.ndarray]
    expression: str
    description: str


def _f(name, variables, fn, expression, description) -> Formula:
    return Formula(name, tuple(variables), fn, expression, description)


FORMULAS: dict[str, Formula] = {
    f.name: f
    for f in (
        _f(
            "I.6.2",
            [("theta", -3.0, 3.0), ("sigma", 1.0, 3.0)],
            lambda x: np.exp(-0.5 * (x[:, 0] / x[:, 1]) ** 2) / (math.sqrt(2 * math.pi) * x[:, 1]),
            "exp(-theta**2/(2*sigma**2))/(sqrt(2*pi)*sigma)",
            "Gaussian density with width sigma",
        ),
        _f(
            "I.12.11",
            [("a", -1.0, 1.0), ("theta", -math.pi, math.pi)],
            lambda x: 1.0 + x[:, 0] * np.sin(x[:, 1]),
            "1 + a*sin(theta)",
            "Lorentz force, dimensionless (a = B v / E)",
        ),
        _f(
            "I.18.4",
            [("a", 0.5, 2.0), ("b", -1.0, 1.0)],
            lambda x: (1.0 + x[:, 0] * x[:, 1]) / (1.0 + x[:, 0]),
            "(1 + a*b)/(1 + a)",
            "centre of mass of two bodies, dimensionless (a = m2/m1, b = r2/r1)",
        ),
        _f(
            "I.37.4",
            [("a", 0.1, 2.0), ("delta", -math.pi, math.pi)],
            lambda x: 1.0 + x[:, 0] + 2.0 * np.sqrt(x[:, 0]) * np.cos(x[:, 1]),
            "1 + a + 2*sqrt(a)*cos(delta)",
            "interference of two waves, dimensionless (a = I2/I1)",
        ),
        _f(
            "I.50.26",
            [("a", -math.pi, math.pi), ("alpha", 0.0, 1.0)],
            lambda x: np.cos(x[:, 0]) + x[:, 1] * np.cos(x[:, 0]) ** 2,
            "cos(a) + alpha*cos(a)**2",
            "anharmonic oscillation, dimensionless (a = omega t)",
        ),
        _f(
            "kan_toy",
            [("x", -1.0, 1.0), ("y", -1.0, 1.0)],
            lambda x: np.exp(np.sin(math.pi * x[:, 0]) + x[:, 1] ** 2),
            "exp(sin(pi*x) + y**2)",
            "the KAN paper's toy function",
        ),
    )  # fmt: skip
}


def list_formulas() -> list[str]:
    """Names accepted by ``data=feynman data.equation=...``."""
    return list(FORMULAS)


class TensorRegression(Dataset):
    """``{"x": x[i], "y": y[i]}`` items."""

    def __init__(self, *, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


@register_dataset("feynman", "Samples of a named formula (Feynman equations, KAN paper toy); regression")
def build_feynman(
    *,
    equation: str = "I.6.2",
    num_train: int = 1000,
    num_val: int = 1000,
    num_test: int = 1000,
    noise_std: float = 0.0,
    seed: int = 0,
) -> DataModule:
    """Uniform samples of ``FORMULAS[equation]`` (inputs scaled to [-1, 1]; targets unscaled).

    Args:
        equation: One of :func:`list_formulas` (``"I.6.2"``, ``"I.12.11"``, ``"I.18.4"``, ``"I.37.4"``,
            ``"I.50.26"``, ``"kan_toy"``).
        num_train: Training samples.
        num_val: Validation samples.
        num_test: Test samples (0: no test split).
        noise_std: Gaussian noise added to the training targets only (val/test stay exact).
        seed: Sampling seed (one generator draws train, val and test in that order).
    """
    if equation not in FORMULAS:
        raise ValueError(f"unknown equation {equation!r}; available: {', '.join(FORMULAS)}")
    if min(num_train, num_val) < 1 or num_test < 0:
        raise ValueError(
            f"need num_train, num_val >= 1 and num_test >= 0, got {num_train}, {num_val}, {num_test}"
        )
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    formula = FORMULAS[equation]
    lo = np.array([v[1] for v in formula.variables])
    hi = np.array([v[2] for v in formula.variables])
    rng = np.random.default_rng(seed)

    def draw(n: int, noise: float) -> TensorRegression:
        raw = lo + (hi - lo) * rng.random((n, len(lo)))
        y = formula.fn(raw)
        if noise > 0:
            y = y + noise * rng.standard_normal(n)
        x = 2.0 * (raw - lo) / (hi - lo) - 1.0
        return TensorRegression(x=torch.from_numpy(x).float(), y=torch.from_numpy(y[:, None]).float())

    train, val = draw(num_train, noise_std), draw(num_val, 0.0)
    test = draw(num_test, 0.0) if num_test else None
    return DataModule(
        task="regression",
        train=train,
        val=val,
        test=test,
        info={
            "in_features": len(lo),
            "out_features": 1,
            "equation": equation,
            "expression": formula.expression,
            "description": formula.description,
            "input_names": [v[0] for v in formula.variables],
            "input_ranges": [[v[1], v[2]] for v in formula.variables],
            "noise_std": noise_std,
            "source": f"kanzoo.data.science.FORMULAS[{equation!r}]",
        },
    )


# --------------------------------------------------------------------------------------------- PDEs


def derivatives(u: Tensor, coords: Tensor, *, second: Sequence[int] = (), create_graph: bool = True):
    """First derivatives ``du/dx_i`` (all i) and second derivatives ``d²u/dx_i²`` (for i in ``second``).

    Args:
        u: ``(N, 1)`` values computed from ``coords`` (which requires grad).
        coords: ``(N, d)`` points.
        second: Coordinates whose pure second derivative is wanted.
        create_graph: Keep the graph (needed to train on a residual).

    Returns:
        ``(grad (N, d), {i: d2u_dxi2 (N,)})``.
    """
    # materialize_grads: a network that is linear in a coordinate has a zero (unused) second derivative
    (grad,) = torch.autograd.grad(u.sum(), coords, create_graph=True, materialize_grads=True)
    out = {}
    for k, i in enumerate(second):
        last = k == len(second) - 1
        (g2,) = torch.autograd.grad(
            grad[:, i].sum(),
            coords,
            create_graph=create_graph,
            retain_graph=create_graph or not last,
            materialize_grads=True,
        )
        out[i] = g2[:, i]
    return grad, out


@dataclass(frozen=True)
class PDEProblem:
    """A PDE on a box with a closed-form solution.

    Attributes:
        name: Problem name.
        coord_names: Names of the coordinates (``("x", "y")`` or ``("x", "t")``).
        lo: Lower corner of the domain.
        hi: Upper corner of the domain.
        exact: Exact solution on ``(N, d)`` coordinates, ``(N, 1)``.
        residual: ``residual(u, coords, create_graph) -> (N, 1)`` for ``u = net(coords)`` computed from
            ``coords`` that require grad (derivatives by autograd); zero for the exact solution.
        boundary: ``boundary(n, generator) -> coords (n, d)`` on the boundary (and initial time).
        equation: The PDE as text.
    """

    name: str
    coord_names: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    exact: Callable[[Tensor], Tensor]
    residual: Callable[..., Tensor]
    boundary: Callable[[int, torch.Generator], Tensor]
    equation: str


def _poisson_exact(c: Tensor) -> Tensor:
    return (torch.sin(math.pi * c[:, :1]) * torch.sin(math.pi * c[:, 1:2])).to(c.dtype)


def _poisson_residual(u: Tensor, c: Tensor, create_graph: bool = True) -> Tensor:
    _, d2 = derivatives(u, c, second=(0, 1), create_graph=create_graph)
    source = 2 * math.pi**2 * torch.sin(math.pi * c[:, 0]) * torch.sin(math.pi * c[:, 1])
    return (d2[0] + d2[1] + source)[:, None]  # Δu + f = 0  <=>  -Δu = f


def _box_boundary(lo: Sequence[float], hi: Sequence[float], faces: Sequence[tuple[int, int]]):
    """Sampler of points uniformly on the given faces ``(dim, 0 = lo | 1 = hi)`` of a box."""
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)

    def sample(n: int, gen: torch.Generator) -> Tensor:
        pts = lo_t + (hi_t - lo_t) * torch.rand(n, len(lo), generator=gen, dtype=torch.float64)
        face = torch.randint(len(faces), (n,), generator=gen)
        for k, (dim, side) in enumerate(faces):
            sel = face == k
            pts[sel, dim] = float(hi[dim] if side else lo[dim])
        return pts.float()

    return sample


_HEAT_ALPHA = 0.1


def _heat_exact(c: Tensor) -> Tensor:
    return (torch.exp(-_HEAT_ALPHA * math.pi**2 * c[:, 1:2]) * torch.sin(math.pi * c[:, :1])).to(c.dtype)


def _heat_residual(u: Tensor, c: Tensor, create_graph: bool = True) -> Tensor:
    grad, d2 = derivatives(u, c, second=(0,), create_graph=create_graph)
    return (grad[:, 1] - _HEAT_ALPHA * d2[0])[:, None]  # u_t - alpha u_xx = 0


PDES: dict[str, PDEProblem] = {
    "poisson": PDEProblem(
        name="poisson",
        coord_names=("x", "y"),
        lo=(-1.0, -1.0),
        hi=(1.0, 1.0),
        exact=_poisson_exact,
        residual=_poisson_residual,
        boundary=_box_boundary((-1.0, -1.0), (1.0, 1.0), [(0, 0), (0, 1), (1, 0), (1, 1)]),
        equation="-(u_xx + u_yy) = 2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2, u = 0 on the boundary",
    ),
    "heat": PDEProblem(
        name="heat",
        coord_names=("x", "t"),
        lo=(-1.0, 0.0),
        hi=(1.0, 1.0),
        exact=_heat_exact,
        residual=_heat_residual,
        # x = -1, x = 1 (u = 0) and t = 0 (u = sin(pi x)); never the final time t = 1
        boundary=_box_boundary((-1.0, 0.0), (1.0, 1.0), [(0, 0), (0, 1), (1, 0)]),
        equation=f"u_t = {_HEAT_ALPHA} u_xx on x in [-1, 1], t in [0, 1], u(+-1, t) = 0, u(x, 0) = sin(pi x)",
    ),
}


def get_pde(name: str) -> PDEProblem:
    """The PDE problem called ``name`` (``"poisson"``, ``"heat"``)."""
    if name not in PDES:
        raise ValueError(f"unknown PDE {name!r}; available: {', '.join(PDES)}")
    return PDES[name]


class Collocation(Dataset):
    """Training items: interior point ``i`` with boundary point ``i mod num_boundary`` and its value."""

    def __init__(self, *, interior: Tensor, boundary: Tensor, boundary_values: Tensor) -> None:
        self.interior, self.boundary, self.boundary_values = interior, boundary, boundary_values

    def __len__(self) -> int:
        return int(self.interior.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        j = i % self.boundary.shape[0]
        return {
            "coords": self.interior[i],
            "boundary_coords": self.boundary[j],
            "boundary_values": self.boundary_values[j],
        }


class GridPoints(Dataset):
    """Evaluation items: grid points with the exact solution."""

    def __init__(self, *, coords: Tensor, target: Tensor, shape: tuple[int, ...]) -> None:
        self.coords, self.target, self.shape = coords, target, tuple(shape)

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"coords": self.coords[i], "target": self.target[i]}


class PDECollate:
    """Default collation plus the problem name and boundary weight (picklable for workers)."""

    def __init__(self, pde: str, boundary_weight: float) -> None:
        self.pde, self.boundary_weight = pde, float(boundary_weight)

    def __call__(self, items: list[dict[str, Tensor]]) -> dict[str, Any]:
        batch = default_collate(items)
        batch["pde"] = self.pde
        batch["boundary_weight"] = self.boundary_weight
        return batch


def _grid(problem: PDEProblem, n: int) -> GridPoints:
    """``n`` points per axis at the centres of ``n`` equal cells (the closed boundary is not included).

    Cell centres also stay off the knots of the default uniform B-spline grids, where autograd's second
    derivative of the closed-form B-spline basis is currently wrong (a measure-zero set that random
    collocation points never hit, but an aligned evaluation grid would).
    """
    axes = [
        a + (b - a) * (torch.arange(n, dtype=torch.float64) + 0.5) / n for a, b in zip(problem.lo, problem.hi)
    ]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))
    return GridPoints(coords=mesh.float(), target=problem.exact(mesh).float(), shape=(n,) * len(axes))


def _build_pde(
    problem: PDEProblem,
    *,
    num_interior: int,
    num_boundary: int,
    val_grid: int,
    test_grid: int,
    boundary_weight: float,
    seed: int,
) -> DataModule:
    if num_interior < 1 or num_boundary < 1 or val_grid < 1 or test_grid < 0:
        raise ValueError(
            "need num_interior, num_boundary >= 1, val_grid >= 1 and test_grid >= 0, got "
            f"{num_interior}, {num_boundary}, {val_grid}, {test_grid}"
        )
    if not boundary_weight >= 0:
        raise ValueError(f"boundary_weight must be >= 0, got {boundary_weight}")
    gen = torch.Generator().manual_seed(int(seed))
    lo, hi = torch.tensor(problem.lo), torch.tensor(problem.hi)
    interior = lo + (hi - lo) * torch.rand(num_interior, len(problem.lo), generator=gen)
    boundary = problem.boundary(num_boundary, gen)
    collate = PDECollate(problem.name, boundary_weight)
    return DataModule(
        task="pde",
        train=Collocation(interior=interior, boundary=boundary, boundary_values=problem.exact(boundary)),
        val=_grid(problem, val_grid),
        test=_grid(problem, test_grid) if test_grid else None,
        collate_fn=collate,
        info={
            "in_features": len(problem.lo),
            "out_features": 1,
            "pde": problem.name,
            "equation": problem.equation,
            "coord_names": list(problem.coord_names),
            "domain": [list(problem.lo), list(problem.hi)],
            "boundary_weight": float(boundary_weight),
            "val_grid": int(val_grid),
            "test_grid": int(test_grid),
            "source": f"kanzoo.data.science.PDES[{problem.name!r}]",
        },
    )


@register_dataset("poisson", "2-D Poisson equation with exact solution sin(pi x) sin(pi y); PDE collocation")
def build_poisson(
    *,
    num_interior: int = 8192,
    num_boundary: int = 2048,
    val_grid: int = 40,
    test_grid: int = 100,
    boundary_weight: float = 10.0,
    seed: int = 0,
) -> DataModule:
    """Collocation points for ``-Δu = 2π² sin(πx) sin(πy)`` on ``[-1, 1]²`` with ``u = 0`` on the boundary.

    Args:
        num_interior: Pool of random interior collocation points (one per training item).
        num_boundary: Random boundary points (cycled over the training items).
        val_grid: Points per axis of the validation grid (cell centres; exact solution known).
        test_grid: Points per axis of the test grid (0: no test split).
        boundary_weight: Weight of the mean squared boundary error in the loss.
        seed: Sampling seed.
    """
    return _build_pde(
        PDES["poisson"], num_interior=num_interior, num_boundary=num_boundary, val_grid=val_grid,
        test_grid=test_grid, boundary_weight=boundary_weight, seed=seed,
    )  # fmt: skip


@register_dataset("heat", "1-D heat equation u_t = 0.1 u_xx with exact solution exp(-0.1 pi^2 t) sin(pi x)")
def build_heat(
    *,
    num_interior: int = 8192,
    num_boundary: int = 2048,
    val_grid: int = 40,
    test_grid: int = 100,
    boundary_weight: float = 10.0,
    seed: int = 0,
) -> DataModule:
    """Collocation points for ``u_t = 0.1 u_xx`` on ``[-1, 1] x [0, 1]`` (boundary and initial condition).

    Args:
        num_interior: Pool of random interior collocation points (one per training item).
        num_boundary: Random points on ``x = ±1`` and ``t = 0`` (cycled over the training items).
        val_grid: Points per axis of the validation grid (cell centres; exact solution known).
        test_grid: Points per axis of the test grid (0: no test split).
        boundary_weight: Weight of the mean squared boundary/initial error in the loss.
        seed: Sampling seed.
    """
    return _build_pde(
        PDES["heat"], num_interior=num_interior, num_boundary=num_boundary, val_grid=val_grid,
        test_grid=test_grid, boundary_weight=boundary_weight, seed=seed,
    )  # fmt: skip
