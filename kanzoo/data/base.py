"""The `DataModule` container, the dataset registry and small helpers shared by the builders.

Data code imports no model code: everything here speaks in datasets, tensors and dicts.
"""

from __future__ import annotations

import difflib
import hashlib
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
        task: One of ``"lm"``, ``"classification"``, ``"segmentation"``.
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
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

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

_REGISTRY: dict[str, tuple[Callable[..., DataModule], str]] = {}


def register_dataset(name: str, description: str = "") -> Callable[[Callable[..., DataModule]], Callable]:
    """Decorator registering a builder ``fn(**kwargs) -> DataModule`` under ``name``."""

    def deco(fn: Callable[..., DataModule]) -> Callable[..., DataModule]:
        if name in _REGISTRY and _REGISTRY[name][0] is not fn:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = (fn, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def list_datasets(with_descriptions: bool = False) -> list[str] | dict[str, str]:
    """Names accepted by :func:`build_data` (sorted), or ``{name: description}``."""
    if with_descriptions:
        return {k: _REGISTRY[k][1] for k in sorted(_REGISTRY)}
    return sorted(_REGISTRY)


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
    dm = _REGISTRY[name][0](**kwargs)
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
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(s) for s in image_size)
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]
