"""Reading a peer's checkpoint file into a plain ``state_dict`` (shared by the peer importers).

Only tensors are ever loaded: ``.safetensors`` files (their header checked first by
``kanzoo.models._validate.read_header``), or ``torch.load(weights_only=True)`` for the ``torch.save``
formats. Training-checkpoint wrappers (``{"state_dict": sd}`` ...) are unwrapped and the key prefixes
of DataParallel/DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) stripped. The tensors then
pass the checkpoint validation layer: no NaN/inf (unless ``allow_nonfinite=True``), no fp8/complex,
float parameters only from floating-point tensors, knot grids finite and strictly increasing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kanzoo.models._validate import FLOAT_DTYPES, CheckpointError, check_tensors, read_header

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
PREFIXES = ("module.", "_orig_mod.")


def fmt_keys(keys: list[str], limit: int = 8) -> str:
    """``"<count>: k1, k2, ... (n more)"`` for error messages."""
    shown = ", ".join(keys[:limit])
    return f"{len(keys)}: {shown}" + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_checkpoint(
    path: str | os.PathLike,
    *,
    who: str,
    suffixes: tuple[str, ...] | None,
    safe_globals: Iterable[type] = (),
    hint: str = "",
) -> Any:
    """Load a checkpoint file as tensors only.

    Args:
        path: The file.
        who: The importer's name, prefixed to error messages.
        suffixes: Accepted ``torch.save`` suffixes; ``None`` accepts any suffix besides ``.safetensors``.
        safe_globals: Extra classes ``torch.load`` may rebuild (e.g. a saved ``argparse.Namespace``).
        hint: Appended to the error when the file holds pickled objects.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown suffix, or a file that is not tensors only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{who}: no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        read_header(path)  # malformed files are refused naming the file
        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError derives from Exception only
            raise CheckpointError(f"{who}: {path} could not be read: {' '.join(str(err).split())}") from None
    if suffixes is not None and path.suffix not in suffixes:
        raise ValueError(
            f"{who}: {path.name} is neither .safetensors nor one of {suffixes} (torch.save files)"
        )
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled objects other than tensors/containers
        raise ValueError(
            f"{who}: {path} could not be read as tensors only (torch.load weights_only=True): {err}{hint}"
        ) from err


def label_of(source: Any) -> str:
    """How error messages name an importer's input: the file path, or ``the given state_dict``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "the given module" if isinstance(source, nn.Module) else "the given state_dict"


def names_its_source(who: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate an importer ``f(source, ...)``: a ValueError about a file source names the file.

    The architecture-reading checks of an importer speak of keys and shapes; when ``source`` is a
    path, the message gets ``<who>: <path>:`` in front (same exception type, still one line).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(source: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(source, *args, **kwargs)
            except ValueError as err:
                label = label_of(source)
                msg = " ".join(str(err).split())
                if not isinstance(source, (str, os.PathLike)) or label in msg:
                    raise
                rest = msg.removeprefix(f"{who}: ")
                try:
                    renamed = type(err)(f"{who}: {label}: {rest}")
                except Exception:  # an exception type that takes other arguments
                    renamed = CheckpointError(f"{who}: {label}: {rest}")
                raise renamed from err

        return wrapper

    return decorate


def unwrap_state_dict(
    source: Any,
    *,
    who: str,
    wrapper_keys: tuple[str, ...] = WRAPPER_KEYS,
    label: str = "the given state_dict",
    allow_nonfinite: bool = False,
    knots: str | None = None,
) -> dict:
    """A plain ``dict`` of name -> tensor from a module, a state dict, or a wrapped training checkpoint.

    Wrappers are entered (in ``wrapper_keys`` order) until a level holds tensors; other entries beside
    a wrapper (an optimizer, saved arguments) are ignored. ``module.``/``_orig_mod.`` prefixes shared
    by all keys are stripped, in any nesting.

    Args:
        source: What to unwrap.
        who: The importer's name, prefixed to error messages.
        wrapper_keys: Wrapper entries to look inside, in order.
        label: How messages name the source (its file path).
        allow_nonfinite: Accept NaN/inf tensors (refused by default).
        knots: Key suffix of knot grids to check first with :func:`check_knots` (no opt-out).

    Raises:
        ValueError: Not a mapping, no tensors found, entries that are not tensors, NaN/inf values,
            fp8 tensors.
    """
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise ValueError(f"{who}: expected a state_dict, module or path, got {type(source).__name__}")
    sd: Mapping[str, Any] = source
    while not any(torch.is_tensor(v) for v in sd.values()):
        inner = next((sd[k] for k in wrapper_keys if isinstance(sd.get(k), Mapping)), None)
        if inner is None:
            raise ValueError(
                f"{who}: found no tensors; top-level keys {sorted(map(str, sd))[:8]} hold no state_dict "
                f"(looked inside {list(wrapper_keys)})"
            )
        sd = inner
    bad = sorted(str(k) for k, v in sd.items() if not torch.is_tensor(v))
    if bad:
        raise ValueError(f"{who}: state_dict entries that are not tensors ({fmt_keys(bad)})")
    out = {str(k): v for k, v in sd.items()}
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                stripped = True
    if knots is not None:
        check_knots(out, who=who, label=label, suffix=knots)
    check_tensors(out, source=f"{who}: {label}", allow_nonfinite=allow_nonfinite)
    return out


def check_float_sources(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, who: str, label: str, name: Any = str
) -> None:
    """Refuse integer/bool tensors in ``state`` (kanzoo names) meant for ``model``'s float parameters.

    Args:
        model: The model being loaded.
        state: The tensors about to be loaded, under the model's names.
        who: The importer's name.
        label: The source's name (its path).
        name: Maps a kanzoo key to the name shown (the peer's).
    """
    for key, param in model.state_dict().items():
        value = state.get(key)
        if value is not None and param.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{who}: {label}: tensor {name(key)!r} has dtype {str(value.dtype).removeprefix('torch.')}; "
                "expected a floating-point tensor (no silent casts of integer/bool values)"
            )


def check_knots(sd: Mapping[str, torch.Tensor], *, who: str, label: str, suffix: str = "grid") -> None:
    """Every knot tensor (key ending in ``suffix``): floating point, finite, strictly increasing.

    A NaN, constant or decreasing grid makes every spline output NaN or zero; it is never a valid
    checkpoint, so there is no opt-out.
    """
    for key, knots in sd.items():
        if not key.endswith(suffix):
            continue
        if knots.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{who}: {label}: knot grid {key!r} has dtype {knots.dtype}; "
                "expected float16/bfloat16/float32/float64"
            )
        if knots.numel() and not bool(torch.isfinite(knots).all()):
            raise CheckpointError(f"{who}: {label}: knot grid {key!r} holds NaN/inf; expected finite knots")
        if knots.dim() >= 1 and knots.shape[-1] > 1 and not bool((knots.diff(dim=-1) > 0).all()):
            raise CheckpointError(
                f"{who}: {label}: knot grid {key!r} is not strictly increasing along its last dimension "
                "(a constant or decreasing grid); expected increasing knots"
            )
