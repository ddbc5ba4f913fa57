"""Candidate functions for symbolic regression of KAN edges, and the affine least-squares fit.

Each edge ``φ(x)`` is matched against ``c · f(a·x + b) + d`` for every candidate ``f``:

1. a coarse grid over ``(a, b)``; for each point the best ``(c, d)`` is a closed-form linear
   regression of ``y`` on ``f(a·x+b)`` (its R² is the squared correlation),
2. a finer grid around the best point,
3. a Levenberg-Marquardt refinement of all four parameters (``scipy.optimize.least_squares``).

Candidates are ranked by R²; :func:`select_fit` then prefers the simplest candidate among those that
fit (almost) as well as the best, because e.g. ``cos(a·x)`` with a tiny ``a`` imitates ``x²`` arbitrarily
well and would otherwise win on noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from torch import Tensor

_EPS = 1e-4


@dataclass(frozen=True)
class Candidate:
    """One function of the symbolic library.

    Attributes:
        name: key used by ``symbolify`` (``"sin"``, ``"x^2"`` ...).
        numpy: exact float64 version (may give nan/inf outside its domain; those fits are rejected).
        torch: version used inside a trainable symbolic edge (clamped so it never gives nan/inf).
        sympy: builds the expression from a sympy argument.
        complexity: rank used to break near-ties (lower is simpler).
        inner_affine: False when ``a, b`` are redundant (``x``, ``0``): only ``c, d`` are fitted.
    """

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    torch: Callable[[Tensor], Tensor]
    sympy: Callable[[sp.Expr], sp.Expr]
    complexity: int
    inner_affine: bool = True
    canonical: Callable[[float, float, float, float], tuple[float, float, float, float]] | None = None


def _power(n: int) -> Callable[[float, float, float, float], tuple[float, float, float, float]]:
    """c·(a·x+b)^n = (c·a^n)·(x + b/a)^n: report the monomial with a = 1."""

    def canon(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
        return (1.0, b / a, c * a**n, d) if a != 0 else (a, b, c, d)

    return canon


def _odd(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """f odd: c·f(a·x+b) = (-c)·f(-a·x-b); report a > 0."""
    return (-a, -b, -c, d) if a < 0 else (a, b, c, d)


def _even(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """f even: f(a·x+b) = f(-a·x-b); report a > 0."""
    return (-a, -b, c, d) if a < 0 else (a, b, c, d)


def _exp_canon(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """c·exp(a·x+b) = (c·e^b)·exp(a·x)."""
    return (a, 0.0, c * math.exp(b), d) if abs(b) < 700 else (a, b, c, d)


def _abs_canon(a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """c·|a·x+b| = (c·|a|)·|x + b/a|."""
    return (1.0, b / a, c * abs(a), d) if a != 0 else (a, b, c, d)


def _safe_recip(z: Tensor) -> Tensor:
    return 1.0 / torch.where(z.abs() < _EPS, torch.full_like(z, _EPS) * torch.where(z < 0, -1.0, 1.0), z)


SYMBOLIC_LIBRARY: dict[str, Candidate] = {}


def register_symbolic(candidate: Candidate) -> Candidate:
    """Add (or replace) a candidate function of the library."""
    SYMBOLIC_LIBRARY[candidate.name] = candidate
    return candidate


for _c in (
    Candidate(
        "0", lambda z: np.zeros_like(z), lambda z: torch.zeros_like(z), lambda z: sp.Integer(0), 0, False
    ),
    Candidate("x", lambda z: z, lambda z: z, lambda z: z, 1, False),
    Candidate("x^2", lambda z: z**2, lambda z: z**2, lambda z: z**2, 2, canonical=_power(2)),
    Candidate("x^3", lambda z: z**3, lambda z: z**3, lambda z: z**3, 3, canonical=_power(3)),
    Candidate("x^4", lambda z: z**4, lambda z: z**4, lambda z: z**4, 4, canonical=_power(4)),
    Candidate("1/x", lambda z: 1.0 / z, _safe_recip, lambda z: 1 / z, 3, canonical=_power(-1)),
    Candidate(
        "1/x^2",
        lambda z: 1.0 / z**2,
        lambda z: _safe_recip(z) ** 2,
        lambda z: 1 / z**2,
        4,
        canonical=_power(-2),
    ),
    Candidate("sqrt", np.sqrt, lambda z: torch.sqrt(z.clamp_min(_EPS)), sp.sqrt, 3),
    Candidate("exp", np.exp, lambda z: torch.exp(z.clamp_max(50.0)), sp.exp, 3, canonical=_exp_canon),
    Candidate("log", np.log, lambda z: torch.log(z.clamp_min(_EPS)), sp.log, 3),
    Candidate("sin", np.sin, torch.sin, sp.sin, 3, canonical=_odd),
    Candidate("abs", np.abs, torch.abs, sp.Abs, 3, canonical=_abs_canon),
    Candidate("tanh", np.tanh, torch.tanh, sp.tanh, 4, canonical=_odd),
    Candidate("arctan", np.arctan, torch.atan, sp.atan, 4, canonical=_odd),
    Candidate(
        "gaussian",
        lambda z: np.exp(-(z**2)),
        lambda z: torch.exp(-(z**2)),
        lambda z: sp.exp(-(z**2)),
        4,
        canonical=_even,
    ),
):
    register_symbolic(_c)


def get_candidate(name: str) -> Candidate:
    """Look a candidate up by name; unknown names raise a ValueError listing the library."""
    if name not in SYMBOLIC_LIBRARY:
        raise ValueError(f"unknown symbolic function {name!r}; known: {sorted(SYMBOLIC_LIBRARY)}")
    return SYMBOLIC_LIBRARY[name]


@dataclass
class SymbolicFit:
    """A fitted edge ``c · f(a·x + b) + d`` with its quality.

    Attributes:
        name: candidate name.
        a, b, c, d: affine parameters.
        r2: coefficient of determination on the fitted samples (1 = perfect).
        complexity: the candidate's complexity.
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float
    complexity: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (
            self.c * get_candidate(self.name).numpy(self.a * np.asarray(x, dtype=np.float64) + self.b)
            + self.d
        )

    def expr(self, x: sp.Expr, *, digits: int | None = None) -> sp.Expr:
        """The fit as a sympy expression of ``x`` (coefficients rounded to ``digits`` significant digits)."""

        def num(v: float) -> sp.Expr:
            return sp.Float(float(f"{v:.{digits}g}") if digits is not None else v)

        f = get_candidate(self.name)
        inner = x if not f.inner_affine else num(self.a) * x + num(self.b)
        return num(self.c) * f.sympy(inner) + num(self.d)

    def __repr__(self) -> str:
        return f"{self.c:.4g}*{self.name}({self.a:.4g}*x{self.b:+.4g}){self.d:+.4g}  (R²={self.r2:.6f})"


def _r2_grid(feats: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² of the best ``c·f + d`` for each row of ``feats`` (..., N): squared correlation; -inf if invalid."""
    with np.errstate(all="ignore"):
        fm = feats - feats.mean(-1, keepdims=True)
        ym = y - y.mean()
        cov = (fm * ym).sum(-1)
        var_f = (fm**2).sum(-1)
        r2 = cov**2 / (var_f * (ym**2).sum())
    bad = ~np.isfinite(feats).all(-1) | ~np.isfinite(r2) | (var_f <= 1e-12 * max(1.0, float((ym**2).sum())))
    return np.where(bad, -np.inf, r2)


def _linear_cd(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    fm = f - f.mean()
    var = float((fm**2).sum())
    c = float((fm * (y - y.mean())).sum() / var) if var > 0 else 0.0
    return c, float(y.mean() - c * f.mean())


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((y - pred) ** 2).sum())
    if not np.isfinite(sse):
        return -math.inf
    return 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else -math.inf)


def fit_candidate(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    name: str,
    *,
    a_range: tuple[float, float] = (-10.0, 10.0),
    b_range: tuple[float, float] = (-10.0, 10.0),
    grid_points: int = 41,
    refine: bool = True,
) -> SymbolicFit:
    """Fit ``c · f(a·x + b) + d`` to samples ``(x, y)`` for the candidate ``name``.

    Args:
        x: inputs, 1-D.
        y: edge values at ``x``, 1-D, same length.
        name: candidate name (see ``SYMBOLIC_LIBRARY``).
        a_range: search interval of the inner scale ``a``, for ``x`` rescaled to [-1, 1].
        b_range: search interval of the inner shift ``b``, for ``x`` rescaled to [-1, 1].
        grid_points: points per axis of the coarse (a, b) grid.
        refine: polish all four parameters with nonlinear least squares.
    """
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64).ravel()
    y = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 4:
        raise ValueError(f"need matching 1-D x and y with >= 4 samples, got {x.shape} and {y.shape}")
    cand = get_candidate(name)
    if name == "0":
        return SymbolicFit(name, 1.0, 0.0, 0.0, float(y.mean()), _r2(np.full_like(y, y.mean()), y), 0)
    if not cand.inner_affine:
        f = cand.numpy(x)
        c, d = _linear_cd(f, y)
        return SymbolicFit(name, 1.0, 0.0, c, d, _r2(c * f + d, y), cand.complexity)

    # Search on x rescaled to [-1, 1], so the (a, b) ranges mean the same for every input scale.
    mid, half = (float(x.max()) + float(x.min())) / 2, (float(x.max()) - float(x.min())) / 2
    half = half if half > 0 else 1.0
    x = (x - mid) / half
    sub = np.linspace(0, x.size - 1, min(x.size, 256)).astype(int)
    xs, ys = x[sub], y[sub]
    a_vals = np.linspace(*a_range, grid_points)
    b_vals = np.linspace(*b_range, grid_points)
    best = (-math.inf, 1.0, 0.0)
    for _ in range(2):  # coarse grid, then a finer grid around the best point
        with np.errstate(all="ignore"):
            feats = cand.numpy(a_vals[:, None, None] * xs + b_vals[None, :, None])
        r2 = _r2_grid(feats, ys)
        ia, ib = np.unravel_index(np.argmax(r2), r2.shape)
        if r2[ia, ib] > best[0]:
            best = (float(r2[ia, ib]), float(a_vals[ia]), float(b_vals[ib]))
        da = (a_vals[1] - a_vals[0]) if len(a_vals) > 1 else 1.0
        db = (b_vals[1] - b_vals[0]) if len(b_vals) > 1 else 1.0
        a_vals = np.linspace(best[1] - da, best[1] + da, 21)
        b_vals = np.linspace(best[2] - db, best[2] + db, 21)
    if not np.isfinite(best[0]):
        return SymbolicFit(name, 1.0, 0.0, 0.0, float(y.mean()), -math.inf, cand.complexity)
    a, b = best[1], best[2]
    with np.errstate(all="ignore"):
        c, d = _linear_cd(cand.numpy(a * x + b), y)
        score = _r2(c * cand.numpy(a * x + b) + d, y)
    params = np.array([a, b, c, d])
    if refine:  # variable projection: optimise (a, b); (c, d) stay the closed-form linear solution
        from scipy.optimize import least_squares

        def resid(p: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                f = cand.numpy(p[0] * xs + p[1])
                cc, dd = _linear_cd(f, ys) if np.isfinite(f).all() else (0.0, 0.0)
                r = cc * f + dd - ys
            return np.where(np.isfinite(r), r, 1e6)

        try:
            sol = least_squares(resid, np.array([a, b]), method="lm", max_nfev=200)
            with np.errstate(all="ignore"):
                f = cand.numpy(sol.x[0] * x + sol.x[1])
                cc, dd = _linear_cd(f, y)
                s = _r2(cc * f + dd, y)
            if np.isfinite(s) and s > score:
                params, score = np.array([sol.x[0], sol.x[1], cc, dd]), s
        except (ValueError, np.linalg.LinAlgError):
            pass
    a_u, b_u, c, d = (float(p) for p in params)
    params = (a_u / half, b_u - a_u * mid / half, c, d)  # back to the original x
    params = cand.canonical(*params) if cand.canonical is not None else params
    return SymbolicFit(name, *(float(p) for p in params), r2=float(score), complexity=cand.complexity)


def suggest_symbolic(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    *,
    candidates: Iterable[str] | None = None,
    **fit_kwargs: object,
) -> list[SymbolicFit]:
    """Fit every candidate (default: the whole library) and return the fits sorted by R², best first.

    Ties in R² are broken by complexity. ``fit_kwargs`` go to :func:`fit_candidate`.
    """
    names = list(SYMBOLIC_LIBRARY) if candidates is None else list(candidates)
    fits = [fit_candidate(x, y, n, **fit_kwargs) for n in names]
    return sorted(fits, key=lambda f: (-f.r2, f.complexity))


def select_fit(fits: list[SymbolicFit], *, rel_tol: float = 2.0, abs_tol: float = 1e-6) -> SymbolicFit:
    """The simplest fit whose unexplained variance is within ``rel_tol``× (+``abs_tol``) of the best.

    With ``1 - R²`` as the error, a candidate qualifies when
    ``1 - R² <= rel_tol · (1 - R²_best) + abs_tol``; among those the lowest complexity wins (then R²).
    """
    if not fits:
        raise ValueError("no fits to select from")
    best_err = min(1.0 - f.r2 for f in fits)
    ok = [f for f in fits if 1.0 - f.r2 <= rel_tol * best_err + abs_tol]
    return min(ok, key=lambda f: (f.complexity, -f.r2))
