"""Split files of folder datasets: ``<root>/splits_seed{seed}.json`` written once and reused.

A new split applies ``train_test_split(ids, random_state=seed)`` to the ids ordered by image file
name (U-KAN's protocol for ``val_fraction=0.2``); it is written to the data folder, or to kanzoo's
cache folder when that is read-only. A split file written by a build that then fails is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .base import atomic_write_json, check_path, random_split_ids, warn_once, writable_location


def split_file_path(root: Path, *, seed: int, val_fraction: float, test_fraction: float) -> Path:
    """Where the split of ``root`` lives: ``splits_seed{seed}.json`` for the default fractions
    (val 0.2, no test), ``splits_seed{seed}_val{v}_test{t}.json`` otherwise."""
    name = f"splits_seed{seed}.json"
    if val_fraction != 0.2 or test_fraction != 0.0:
        name = f"splits_seed{seed}_val{val_fraction:g}_test{test_fraction:g}.json"
    existing = root / name
    if existing.is_file():
        return existing
    return writable_location(root, name)


def load_or_create_split(
    root: Path,
    ids: Sequence[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    split_file: str | os.PathLike | None = None,
) -> tuple[dict[str, list[str]], Path]:
    """Reads the split file (given, or the default one for ``root``), creating it when missing.

    A new split applies ``train_test_split(ids, random_state=seed)`` to ``ids`` in the order given
    (callers pass them ordered by image file name, which reproduces U-KAN's split).

    Raises:
        FileNotFoundError: an explicit ``split_file`` does not exist.
        ValueError: the file names ids that are not in the folder.
    """
    if split_file is not None:
        path = check_path(split_file, "split file")
    else:
        path = split_file_path(root, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"split file {path} is not valid JSON: {e}") from None
        splits = {k: [str(i) for i in data[k]] for k in ("train", "val", "test") if k in data}
        if "train" not in splits:
            raise ValueError(f"split file {path} has no 'train' list")
        known = set(ids)
        missing = sorted({i for v in splits.values() for i in v} - known)
        if missing:
            raise ValueError(
                f"split file {path} names {len(missing)} id(s) not found under {root}: {missing[:5]}"
            )
        listed = {i for v in splits.values() for i in v}
        extra = sorted(known - listed)
        if extra:
            warn_once(
                f"{len(extra)} id(s) under {root} are in no split of {path} and are unused: {extra[:5]}"
            )
        return splits, path
    splits = random_split_ids(
        ids, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, sort=False
    )
    record = {**splits, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    record["method"] = "sklearn train_test_split(ids ordered by image file name, random_state=seed)"
    atomic_write_json(path, record)
    if _NEW_SPLITS is not None:
        _NEW_SPLITS.append(path)
    return splits, path


_NEW_SPLITS: list[Path] | None = None


@contextlib.contextmanager
def _undo_new_split_files() -> Iterator[None]:
    """Split files written inside the block are deleted again if the block fails (a failed build
    leaves nothing behind in the data folder)."""
    global _NEW_SPLITS
    outer, _NEW_SPLITS = _NEW_SPLITS, []
    try:
        yield
    except BaseException:
        for made in _NEW_SPLITS:
            made.unlink(missing_ok=True)
        raise
    finally:
        _NEW_SPLITS = outer
