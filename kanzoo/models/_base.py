"""Shared configuration and checkpoint machinery for the vision families.

A family defines a ``@dataclass`` config deriving from :class:`KanzooConfig` (JSON-serializable
fields only: layer specs are strings such as ``"kan"``/``"conv"``/``"kan_rational"`` plus a
``layer_kwargs`` dict) and a model class deriving from ``nn.Module`` and :class:`KanzooModel`.
``save_pretrained(dir)`` writes ``config.json`` (with ``"kanzoo_model": <family key>``) and
``model.safetensors``; ``from_pretrained(dir)`` rebuilds the model and loads the weights strictly,
naming every missing/unexpected key and shape mismatch when they disagree. No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kanzoo.models._validate import (
    CheckpointError,
    CheckpointMismatchError,
    build_skeleton,
    check_config_types,
    check_skeleton,
    check_tensors,
    key_mismatches,
    read_config,
    read_header,
)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CheckpointMismatchError",
    "KanzooConfig",
    "KanzooModel",
    "check_state_dict",
    "count_parameters",
    "make_activation",
    "match_width",
    "matched_width",
    "parameter_count_of",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C", bound="KanzooConfig")
M = TypeVar("M", bound="KanzooModel")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        "config values must be JSON-serializable (str, number, bool, list, dict), "
        f"got {type(value).__name__}: {value!r}; "
        "pass layer choices as strings like 'kan' and their options in layer_kwargs"
    )


@dataclasses.dataclass
class KanzooConfig:
    """Base for family configs: a dataclass of JSON-friendly values with dict/JSON round trips."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _jsonable(getattr(self, field.name))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain JSON-serializable dict (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], **overrides: Any) -> C:
        """Build from a dict, ignoring bookkeeping keys written by ``save_pretrained``.

        Raises:
            ValueError: Unknown fields (named in the message).
        """
        data = {k: v for k, v in {**data, **overrides}.items() if k not in _BOOKKEEPING}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            hints = {u: difflib.get_close_matches(u, names, n=1) for u in unknown}
            hint = "".join(f"; {u!r}: did you mean {h[0]!r}?" for u, h in hints.items() if h)
            raise ValueError(
                f"{cls.__name__} has no field(s) {unknown}{hint} (valid fields: {sorted(names)})"
            )
        return cls(**data)

    def replace(self: C, **overrides: Any) -> C:
        """A copy with some fields replaced (unknown fields raise ValueError)."""
        return type(self).from_dict(self.to_dict(), **overrides)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_BOOKKEEPING = frozenset({"kanzoo_model", "kanzoo_version", "architecture"})


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of (optionally only trainable) parameter elements, shared tensors counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _fmt_keys(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fits ``model`` exactly.

    Args:
        model: The module to load into.
        state_dict: Tensors by name.
        source: What to call the state dict in the error (e.g. its file path).
    """
    report = key_mismatches(model.state_dict(), state_dict)
    if report:
        raise CheckpointMismatchError(report.message(source, type(model).__name__))


def _load_weights(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with its errors naming the file."""
    try:
        return load_file(str(path), device=str(map_location))
    except (OSError, ValueError):
        raise
    except Exception as err:  # safetensors' SafetensorError derives from Exception only
        raise CheckpointError(f"{path}: cannot read the weights: {' '.join(str(err).split())}") from None


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("kanzoo")
    except Exception:  # not installed as a distribution
        return "unknown"


class KanzooModel:
    """Mixin giving an ``nn.Module`` with a ``.config`` the safetensors + JSON checkpoint format.

    Subclasses set ``config_class`` (a :class:`KanzooConfig` dataclass) and ``kanzoo_model`` (the
    family key written into ``config.json`` and registered with ``register_family``), and accept the
    config as their first constructor argument.
    """

    config_class: ClassVar[type[KanzooConfig]]
    kanzoo_model: ClassVar[str]
    config: KanzooConfig

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def _make_config(
        cls, config: KanzooConfig | dict[str, Any] | None, overrides: dict[str, Any]
    ) -> KanzooConfig:
        """Config from an instance, a dict or the defaults, with keyword overrides applied."""
        if config is None:
            return cls.config_class.from_dict({}, **overrides)
        if isinstance(config, dict):
            return cls.config_class.from_dict(config, **overrides)
        if not isinstance(config, cls.config_class):
            raise TypeError(
                f"{cls.__name__} expects a {cls.config_class.__name__}, got {type(config).__name__}"
            )
        return config.replace(**overrides) if overrides else config

    def num_parameters(self, *, trainable_only: bool = False) -> int:
        """Parameter count (shared tensors once)."""
        assert isinstance(self, nn.Module)
        return count_parameters(self, trainable_only=trainable_only)

    # -- checkpoints --------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``save_directory`` (created if needed).

        Returns:
            The directory path.
        """
        assert isinstance(self, nn.Module)
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "kanzoo_model": self.kanzoo_model,
            "kanzoo_version": _package_version(),
            **self.config.to_dict(),
        }
        with open(out / CONFIG_NAME, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
        # Clone so tensors that share storage (views, tied weights) serialize independently.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.state_dict().items()}
        save_file(
            tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt", "kanzoo_model": self.kanzoo_model}
        )
        return out

    @classmethod
    def from_pretrained(
        cls: type[M],
        directory: str | os.PathLike,
        *,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        allow_nonfinite: bool = False,
        **config_overrides: Any,
    ) -> M:
        """Rebuild a model saved with :meth:`save_pretrained` and load its weights.

        Args:
            directory: The checkpoint directory.
            map_location: Device to place the loaded tensors on.
            strict: Require the weights to fit exactly (names and shapes); non-strict still
                rejects shape mismatches and reports what was skipped via a warning.
            allow_nonfinite: Load NaN/inf weights (refused by default), e.g. to inspect a run
                that diverged.
            **config_overrides: Config fields to change before building (e.g. ``dropout=0.0``);
                changing architecture fields makes loading fail with a named mismatch.

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: The directory, its config.json or model.safetensors is missing.
            ValueError: The config belongs to another family, has unknown fields, or the weights
                do not fit (missing/unexpected keys, shape mismatches are named).
        """
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"checkpoint directory {root} does not exist")
        cfg_path, w_path = root / CONFIG_NAME, root / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"{root} is missing {p.name} (expected {CONFIG_NAME} + {WEIGHTS_NAME})"
                )
        data = read_config(cfg_path)
        key = data.get("kanzoo_model")
        if key != cls.kanzoo_model:
            raise ValueError(
                f"{cfg_path} holds a {key!r} model; {cls.__name__} loads {cls.kanzoo_model!r} checkpoints "
                "(use kanzoo.from_pretrained to dispatch automatically)"
            )
        check_config_types(data, cls.config_class, source=str(cfg_path))
        try:
            config = cls.config_class.from_dict(data, **config_overrides)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{cfg_path}: {' '.join(str(err).split())}") from None
        # Sizes, keys, shapes and dtypes are checked against the header before anything is allocated.
        header = read_header(w_path)
        skeleton = build_skeleton(
            lambda: cls(config), header, source=str(w_path), config_source=str(cfg_path)
        )
        if skeleton is not None:
            check_skeleton(skeleton, header, source=str(w_path), strict=strict)
            del skeleton
        try:
            model = cls(config)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{cfg_path}: invalid config: {' '.join(str(err).split())}") from None
        state = _load_weights(w_path, map_location)
        check_tensors(
            state,
            source=str(w_path),
            allow_nonfinite=allow_nonfinite,
            float_keys=[n for n, p in model.named_parameters() if p.is_floating_point()],
        )
        # Keep the checkpoint's precision (a float64 or bf16 checkpoint loads as such, like
        # transformers' models do); knots stay float32 under half precision by design.
        dtypes = {state[n].dtype for n, _ in model.named_parameters() if n in state}
        if len(dtypes) == 1 and (dtype := dtypes.pop()) != torch.float32 and dtype.is_floating_point:
            model.to(dtype)
        if strict:
            check_state_dict(model, state, source=str(w_path))
            model.load_state_dict(state, strict=True)
        else:
            shapes = key_mismatches(model.state_dict(), state).shapes
            if shapes:
                raise CheckpointMismatchError(
                    f"{w_path}: shape mismatches ({len(shapes)}): {_fmt_keys(shapes)}"
                )
            result = model.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                warnings.warn(
                    f"non-strict load of {w_path}: missing {result.missing_keys}, "
                    f"unexpected {result.unexpected_keys}",
                    stacklevel=2,
                )
        model.to(map_location)
        model.eval()
        return model


# ----------------------------------------------------------------------------------------------
# Helpers shared by the families
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name: ``"relu"``, ``"silu"``, ``"gelu"``, ``"tanh"`` or ``"identity"``."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


def parameter_count_of(build: Callable[[], nn.Module]) -> int:
    """Parameter count of the module ``build()`` returns (the module is discarded).

    Built for real on the CPU: the meta device would skip allocation, but initialisers such as
    ``trunc_normal_`` run far slower there through their decompositions, and some (least-squares
    fits) have no meta kernels at all.
    """
    return count_parameters(build())


def _quadratic_root(points: list[tuple[int, int]], target: int) -> float | None:
    """Width where the quadratic through three ``(width, count)`` points reaches ``target``."""
    (x0, y0), (x1, y1), (x2, y2) = (tuple(map(Fraction, p)) for p in points)
    # Newton divided differences: y = y0 + d1 (x - x0) + d2 (x - x0)(x - x1).
    d1 = (y1 - y0) / (x1 - x0)
    d2 = ((y2 - y1) / (x2 - x1) - d1) / (x2 - x0)
    a, b, c = d2, d1 - d2 * (x0 + x1), y0 - d1 * x0 + d2 * x0 * x1 - target
    if a == 0:
        return None if b == 0 else float(-c / b)
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    return max((-float(b) + s * math.sqrt(float(disc))) / (2 * float(a)) for s in (-1, 1))


def match_width(
    count: Callable[[int], int], target: int, *, low: int, high: int, tolerance: float = 0.05
) -> int:
    """The integer width whose parameter count is closest to ``target``.

    ``count(width)`` must be non-decreasing in ``width``. Parameter counts of the families are
    (nearly) quadratic in a width (``w*w`` weight blocks, ``w`` biases and norms), so three small
    probes give a quadratic whose root is checked with its neighbours; when that guess misses
    (not quadratic), a binary search over ``[low, high]`` finds the first width reaching ``target``.
    Every candidate is built at most once.

    Args:
        count: Parameter count as a function of the width.
        target: The parameter count to match (the KAN model's).
        low: Smallest width to consider (>= 1).
        high: Largest width to consider.
        tolerance: Maximum relative gap accepted.

    Returns:
        The chosen width.

    Raises:
        ValueError: No width in ``[low, high]`` gets within ``tolerance`` of ``target``.
    """
    memo: dict[int, int] = {}

    def cached(width: int) -> int:
        if width not in memo:
            memo[width] = count(width)
        return memo[width]

    def gap(width: int) -> float:
        return abs(cached(width) - target) / max(target, 1)

    probes = sorted({min(max(w, low), high) for w in (low, low + 8, low + 16)})
    if len(probes) == 3:
        root = _quadratic_root([(w, cached(w)) for w in probes], target)
        if root is not None and low <= root <= high:
            guess = int(round(root))
            near = [w for w in (guess - 1, guess, guess + 1) if low <= w <= high]
            best = min(near, key=gap)
            # Accept if the guess brackets the target (so no other width can be closer).
            below = [w for w in near if cached(w) <= target]
            above = [w for w in near if cached(w) >= target]
            if below and above and gap(best) <= tolerance:
                return best
    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi) // 2
        if cached(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [w for w in (lo - 1, lo) if low <= w <= high]
    best = min(candidates, key=gap)
    if gap(best) > tolerance:
        raise ValueError(
            f"no width in [{low}, {high}] gets within {tolerance:.0%} of {target} parameters "
            f"(best: width {best} with {cached(best)}, {gap(best):.1%} off)"
        )
    return best


def _freeze(value: Any) -> Any:
    """A hashable stand-in for nested JSON-like values (cache keys)."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(_freeze(v) for v in value))
    return value


_MATCH_CACHE: dict[Any, int] = {}


def matched_width(
    key: str,
    overrides: dict[str, Any],
    *,
    target: Callable[[], nn.Module],
    twin: Callable[[int], nn.Module],
    low: int,
    high: int,
    tolerance: float = 0.05,
) -> int:
    """Width of a twin whose parameter count is within ``tolerance`` of a KAN model's (cached).

    Args:
        key: Cache namespace (the twin's model name).
        overrides: The user's config overrides; part of the cache key.
        target: Builds the KAN model to match.
        twin: Builds the twin at a given width.
        low: Smallest width searched.
        high: Largest width searched.
        tolerance: Maximum relative parameter gap.

    Returns:
        The width (see :func:`match_width`).
    """
    cache_key = (key, _freeze(overrides))
    if cache_key not in _MATCH_CACHE:
        goal = parameter_count_of(target)
        _MATCH_CACHE[cache_key] = match_width(
            lambda w: parameter_count_of(lambda: twin(w)), goal, low=low, high=high, tolerance=tolerance
        )
    return _MATCH_CACHE[cache_key]
