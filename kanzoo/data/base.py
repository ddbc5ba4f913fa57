"""The `DataModule` container, the dataset registry and small helpers shared by the builders.

Data code imports no model code: everything here speaks in datasets, tensors and dicts.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

TASKS = ("lm", "classification", "segmentation", "forecasting", "regression", "pde")

# ImageNet statistics, the default normalization for RGB inputs (timm's constants, restated).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataModule:
    """Built datasets for one task plus what a model and trainer need to know about them.

    Attributes:
        task: ``"lm"``, ``"classification"``, ``"segmentation"`` or another registered task name.
        train: Training dataset; items are dicts of tensors (see ``kanzoo.data`` docs).
        val: Validation dataset.
        test: Optional test dataset (``None`` when the source has no test split).
        collate_fn: Collate function for a ``DataLoader``; ``None`` means torch's default.
        info: Task metadata (``vocab_size``/``block_size``/``tokenizer`` for lm; ``num_classes``,
            ``in_chans``, ``image_size``, ``mean``, ``std`` for vision; ``class_names`` for
            classification) plus ``name`` and ``source``.
    """

    task: str
    train: Dataset
    val: Dataset
    test: Dataset | None = None
    collate_fn: Callable | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Other tasks (forecasting, ...) register with the trainer and the evaluator; data only
        # needs a name for them.
        if not isinstance(self.task, str) or not self.task.isidentifier():
            raise ValueError(f"task must be a name such as {', '.join(TASKS)}, got {self.task!r}")

    def loader(
        self,
        split: str = "train",
        *,
        batch_size: int = 32,
        shuffle: bool | None = None,
        num_workers: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> DataLoader:
        """Returns a ``DataLoader`` over one split (shuffled by default for ``"train"`` only).

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            batch_size: Items per batch.
            shuffle: Shuffle the items; defaults to ``split == "train"``.
            num_workers: Loader worker processes.
            drop_last: Drop the last incomplete batch.
            **kwargs: Passed on to ``torch.utils.data.DataLoader``.
        """
        ds = {"train": self.train, "val": self.val, "test": self.test}.get(split)
        if ds is None:
            raise ValueError(
                f"split {split!r} is not available (have train, val{', test' if self.test else ''})"
            )
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            num_workers=num_workers,
            drop_last=drop_last,
            collate_fn=self.collate_fn,
            **kwargs,
        )

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{k}={len(v)}"
            for k, v in (("train", self.train), ("val", self.val), ("test", self.test))
            if v is not None
        )
        shown = {k: v for k, v in self.info.items() if k not in ("tokenizer", "class_names")}
        return f"DataModule(task={self.task!r}, {sizes}, info={shown})"


# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    fn: Callable[..., DataModule]
    description: str
    embedded: bool


_REGISTRY: dict[str, _Entry] = {}
# Embedded datasets whose builder module does not (yet) pass ``embedded=True`` itself.
_EMBEDDED_ELSEWHERE = frozenset({"nuclei"})


def register_dataset(
    name: str, description: str = "", *, embedded: bool = False
) -> Callable[[Callable[..., DataModule]], Callable]:
    """Decorator registering a builder ``fn(**kwargs) -> DataModule`` under ``name``.

    Args:
        name: The name ``build_data`` and ``data=<name>`` use.
        description: One line for ``python -m kanzoo.data`` (default: the docstring's first line).
        embedded: The data ships with the install (no files, no network): such datasets are
            listed by ``list_datasets(embedded=True)`` and a test trains a few steps on each.
    """

    def deco(fn: Callable[..., DataModule]) -> Callable[..., DataModule]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"dataset {name!r} is already registered")
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = _Entry(fn, desc, embedded or name in _EMBEDDED_ELSEWHERE)
        return fn

    return deco


def list_datasets(
    with_descriptions: bool = False, *, embedded: bool | None = None
) -> list[str] | dict[str, str]:
    """Names accepted by :func:`build_data` (sorted), or ``{name: description}``.

    Args:
        with_descriptions: Return ``{name: description}``.
        embedded: True: only data shipped with the install; False: only the others.
    """
    names = sorted(k for k, e in _REGISTRY.items() if embedded is None or e.embedded == embedded)
    if with_descriptions:
        return {k: _REGISTRY[k].description for k in names}
    return names


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the (resolved) type ``hint``; unknown hints accept anything."""
    import collections.abc as cabc
    import types
    import typing

    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is os.PathLike:
        return isinstance(value, os.PathLike)
    if origin in (cabc.Sequence, list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (cabc.Mapping, dict):
        return isinstance(value, cabc.Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_setting_type(name: str, value: Any, param: inspect.Parameter, fn: Callable) -> None:
    """Refuse a builder argument whose type does not fit its annotation (one line naming it)."""
    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: nothing to check against
        return
    hint = hints.get(param.name)
    if hint is not None and not _matches(value, hint):
        shown = str(hint).replace("typing.", "").replace("collections.abc.", "").replace("<class '", "")
        shown = shown.replace("'>", "")
        raise ValueError(f"{name} must be {shown}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``, else a one-line ``ValueError`` naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be an integer >= {minimum}{upper}, got {value!r}")
    return int(value)


def builder_parameters(name: str) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters of dataset ``name``'s builder (None when it takes ``**kwargs``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}")
    params = inspect.signature(_REGISTRY[name].fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def build_data(name: str, **kwargs: Any) -> DataModule:
    """Builds a registered dataset by name.

    Args:
        name: A registered default (``"shakespeare"``, ``"pydoc"``, ``"digits"``, ``"shapes"``,
            ``"nuclei"``, ...) or a kind-specific builder (``"text"``, ``"image_folder"``,
            ``"hf_image"``, ``"segmentation_folder"``, ``"hf_segmentation"``).
        **kwargs: Builder arguments (see each builder's docstring).

    Raises:
        ValueError: ``name`` is unknown (the message suggests close names).
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Available: {', '.join(sorted(_REGISTRY))}")
    params = builder_parameters(name)
    if params is not None:
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"dataset {name!r} has no option {unknown[0]!r}{hint}; its options: {', '.join(params)}"
            )
        for key, value in kwargs.items():
            check_setting_type(f"data.{key}", value, params[key], _REGISTRY[name].fn)
    dm = _REGISTRY[name].fn(**kwargs)
    dm.info.setdefault("name", name)
    return dm


# --------------------------------------------------------------------------------------------- helpers


def check_path(path: str | os.PathLike, what: str = "path") -> Path:
    """Returns ``Path(path)`` or raises ``FileNotFoundError`` naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


def cache_dir() -> Path:
    """kanzoo's cache folder (``$KANZOO_CACHE`` or ``~/.cache/kanzoo``), created on demand."""
    root = Path(os.environ.get("KANZOO_CACHE", Path.home() / ".cache" / "kanzoo"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_json(path: Path, obj: Any) -> None:
    """Writes JSON through a temporary file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def writable_location(preferred: Path, name: str) -> Path:
    """``preferred/name`` when that folder is writable, else a per-folder spot in the cache dir."""
    if os.access(preferred, os.W_OK):
        return preferred / name
    key = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "splits" / f"{preferred.name}-{key}" / name


def random_split_ids(
    ids: Sequence[str], *, val_fraction: float, test_fraction: float = 0.0, seed: int = 0, sort: bool = True
) -> dict[str, list[str]]:
    """Deterministic id split with sklearn's ``train_test_split``.

    The val part is drawn exactly as ``train_test_split(ids, test_size=val_fraction,
    random_state=seed)`` on the sorted ids (the U-KAN protocol); a test part, when asked for, is
    drawn first from the full list with ``random_state=seed + 1``.

    Args:
        ids: Item ids.
        val_fraction: Fraction for val (of all ids when there is no test part).
        test_fraction: Fraction for test (0 = no test part).
        seed: ``random_state`` of the split.
        sort: Sort ids first; pass False when ``ids`` already come in the wanted order.
    """
    from sklearn.model_selection import train_test_split

    ids = sorted(ids) if sort else list(ids)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1) with val+test < 1, got {test_fraction}")
    if len(ids) < 2 + (test_fraction > 0):
        raise ValueError(f"need at least {2 + (test_fraction > 0)} items to split, got {len(ids)}")
    out: dict[str, list[str]] = {}
    rest = ids
    if test_fraction > 0:
        n_test = max(1, round(test_fraction * len(ids)))
        rest, test = train_test_split(rest, test_size=n_test, random_state=seed + 1)
        out["test"] = sorted(test)
    n_val = max(1, round(val_fraction * len(ids))) if test_fraction > 0 else val_fraction
    train, val = train_test_split(rest, test_size=n_val, random_state=seed)
    out["train"], out["val"] = list(train), list(val)
    return out


_WARNED: set[str] = set()


def warn_once(msg: str) -> None:
    """Emits a ``UserWarning`` the first time a given message occurs in this process."""
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)


def resolve_mean_std(
    in_chans: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization constants with one value per channel (ImageNet's by default).

    A single-channel default uses the average of ImageNet's three values, as timm does.
    """
    if mean is None:
        mean = IMAGENET_MEAN if in_chans == 3 else (sum(IMAGENET_MEAN) / 3,) * in_chans
    if std is None:
        std = IMAGENET_STD if in_chans == 3 else (sum(IMAGENET_STD) / 3,) * in_chans
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) == 1 and in_chans > 1:
        mean, std = mean * in_chans, std * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean/std need {in_chans} values (in_chans), got {mean} / {std}")
    return mean, std


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for a ``[C, H, W]`` (or ``[N, C, H, W]``) tensor."""
    shape = (-1, 1, 1)
    m = torch.tensor(mean, dtype=x.dtype).view(shape)
    s = torch.tensor(std, dtype=x.dtype).view(shape)
    return (x - m) / s


def as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``64 -> (64, 64)``; ``(h, w)`` unchanged; ``None`` stays ``None`` (keep original size)."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, (list, tuple))
        or len(image_size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 65536 for s in image_size)
    ):
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return (int(image_size[0]), int(image_size[1]))
