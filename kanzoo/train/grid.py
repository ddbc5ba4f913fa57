"""Data-driven B-spline grid updates during training.

Forward hooks capture the inputs of every KAN layer whose basis has a knot ``grid`` (B-spline);
each layer then re-places its knots on those inputs (``kanzoo.layers.grid.update_grid``), which
refits the coefficients so the layer's function is preserved. Layers with other bases (RBF,
Chebyshev, rational, ...) have no grid and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def _is_bspline_kan(module: nn.Module) -> bool:
    basis = getattr(module, "basis", None)
    return (
        isinstance(getattr(module, "spline_weight", None), Tensor)
        and isinstance(getattr(basis, "grid", None), Tensor)
        and hasattr(basis, "spline_order")  # B-spline knots (an RBF basis also has a "grid" of centers)
    )


def grid_modules(model: nn.Module) -> dict[str, nn.Module]:
    """KAN layers (linear or conv) whose basis is a B-spline with a knot ``grid``."""
    return {name: m for name, m in model.named_modules() if _is_bspline_kan(m)}


def _updater(module: nn.Module) -> Callable[[Tensor], None]:
    method = getattr(module, "update_grid", None)
    if callable(method):
        return method
    from kanzoo.layers import grid as layer_grid  # KANConvNd: the function form takes both kinds

    return lambda x: layer_grid.update_grid(module, x)


def _is_conv(module: nn.Module) -> bool:
    return hasattr(module, "in_channels") and hasattr(module, "kernel_size")


def _as_rows(module: nn.Module, x: Tensor) -> Tensor:
    """Layer input as ``(rows, features)``: linear layers flatten leading dims, conv layers move
    channels last and flatten batch and spatial dims."""
    if _is_conv(module) and x.dim() >= 3:
        return x.movedim(1, -1).reshape(-1, x.shape[1])
    return x.reshape(-1, x.shape[-1])


@torch.no_grad()
def capture_inputs(
    model: nn.Module, run_forward: Callable[[], object], modules: dict[str, nn.Module]
) -> dict:
    """Run ``run_forward()`` once and return each module's input as a ``(rows, features)`` tensor."""
    captured: dict[str, Tensor] = {}
    handles = []
    for name, module in modules.items():

        def hook(mod, args, _name=name):
            if args and isinstance(args[0], Tensor):
                captured[_name] = _as_rows(mod, args[0].detach())

        handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        run_forward()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return captured


def subsample_rows(x: Tensor, max_rows: int, *, seed: int) -> Tensor:
    """At most ``max_rows`` rows of ``x``, chosen by a private generator (global RNG untouched)."""
    if x.shape[0] <= max_rows:
        return x
    gen = torch.Generator()
    gen.manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=gen)[:max_rows].to(x.device)
    return x.index_select(0, idx)


@torch.no_grad()
def update_grids(
    model: nn.Module,
    run_forward: Callable[[], object],
    *,
    max_rows: int = 2048,
    seed: int = 0,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> list[str]:
    """Update the knot grids of all B-spline KAN layers of ``model`` from one batch.

    Args:
        model: The (unwrapped) model.
        run_forward: Runs the model on a batch (called once, under ``no_grad``, in eval mode).
        max_rows: Rows of layer input used per layer (random subset when more).
        seed: Seed of the row subset (the same on every process).
        gather: Concatenates a tensor across processes (so every process fits the same grid).

    Returns:
        Names of the updated layers (empty when the model has no B-spline layers).
    """
    modules = grid_modules(model)
    if not modules:
        return []
    captured = capture_inputs(model, run_forward, modules)
    updated = []
    for name, module in modules.items():
        if name not in captured:
            continue  # layer not reached by this forward pass
        x = captured[name]
        if gather is not None:
            x = gather(x.contiguous())
        weight = getattr(module, "spline_weight", None)
        dtype = weight.dtype if isinstance(weight, Tensor) else torch.float32
        x = subsample_rows(x, max_rows, seed=seed).to(dtype)
        if _is_conv(module):
            # KANConvNd.update_grid takes (N, C, *spatial): rows become 1x1 "images".
            x = x.reshape(*x.shape, *([1] * (module.spline_weight.dim() - 3)))
        _updater(module)(x)
        updated.append(name)
    return updated
