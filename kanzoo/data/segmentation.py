"""Segmentation from image/mask folders, with deterministic split files.

Layouts (``layout="auto"`` picks ``"ukan"`` when ``<root>/masks/0/`` exists, else ``"generic"``):

- ``"ukan"`` (U-KAN / UNeXt): ``<root>/images/<id>.<ext>`` and ``<root>/masks/<c>/<id>.<ext>``, one
  mask folder per foreground class (``masks/0`` only = binary; ``masks/0..K-1`` = K foreground
  classes, pixel label ``c + 1`` where ``masks/c`` is set, later folders winning overlaps).
- ``"generic"``: ``<root>/<image_dir>/`` and ``<root>/<mask_dir>/`` matched by file stem; a mask may
  carry a suffix (``x.png`` <-> ``x_mask.png``, ``x_segmentation.png``, ...). ``image_dir`` and
  ``mask_dir`` may be the same folder (masks are then told apart by their suffix); numbered extra
  masks of one image (``x_mask.png``, ``x_mask_1.png``, as in BUSI) are merged by union.

Splits: a folder with ``train/`` (and ``val/``/``validation/``, ``test/``) sub-roots uses them as
given. Otherwise the ids, ordered by image file name, are split with
``train_test_split(random_state=seed)`` (U-KAN's protocol for ``val_fraction=0.2``); the split is
written to ``<root>/splits_seed{seed}.json`` (or to kanzoo's cache folder when ``root`` is
read-only) and reused on later runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import (
    DataModule,
    as_size,
    check_path,
    normalize,
    register_dataset,
    resolve_mean_std,
    warn_once,
)
from .masks import (
    IGNORE_INDEX,
    _is_ignore_class,
    augment_pair,
    image_size_of,
    read_image,
    read_mask_raw,
    resize_pair,
    to_label_map,
)
from .splits import _undo_new_split_files, load_or_create_split, split_file_path  # noqa: F401

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
MASK_SUFFIXES = (
    "_mask",
    "_masks",
    "-mask",
    "_segmentation",
    "_Segmentation",
    "_seg",
    "_label",
    "_labels",
    "_gt",
    "_anno",
    "_annotation",
)
_SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


@dataclass(frozen=True)
class Pair:
    """One sample: its id, image file and mask files (one per U-KAN class folder, or several
    numbered masks of one image to be merged)."""

    id: str
    image: Path
    masks: tuple[Path, ...]


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def _mask_key(stem: str, suffixes: Sequence[str]) -> tuple[str, int] | None:
    """``(base id, extra index)`` when ``stem`` ends with a mask suffix (``x_mask_2`` -> ("x", 2))."""
    for suf in sorted(suffixes, key=len, reverse=True):
        m = re.fullmatch(rf"(.+?){re.escape(suf)}(?:_(\d+))?", stem)
        if m:
            return m.group(1), int(m.group(2) or 0)
    return None


def _index_masks(files: Sequence[Path], suffixes: Sequence[str], *, allow_plain: bool) -> dict[str, list]:
    """base id -> [(priority, extra index, path)]; priority 0 = same stem, 1 = suffixed."""
    index: dict[str, list] = {}
    for f in files:
        if allow_plain:
            index.setdefault(f.stem, []).append((0, 0, f))
        key = _mask_key(f.stem, suffixes)
        if key is not None:
            index.setdefault(key[0], []).append((1, key[1], f))
    return index


def _masks_for(image: Path, index: dict[str, list], where: Path) -> tuple[Path, ...]:
    cands = index.get(image.stem, [])
    if not cands:
        raise ValueError(f"image without mask: {image} (no mask named {image.stem}[suffix].* in {where})")
    plain = [c for c in cands if c[0] == 0]
    if plain:
        if len(plain) > 1 or len(cands) > len(plain):
            names = sorted(str(c[2].name) for c in cands)
            raise ValueError(f"ambiguous masks for {image}: {names} in {where}")
        return (plain[0][2],)
    firsts = [c for c in cands if c[1] == 0]
    if len(firsts) != 1:
        names = sorted(str(c[2].name) for c in cands)
        raise ValueError(f"ambiguous masks for {image}: {names} in {where}")
    return tuple(c[2] for c in sorted(cands, key=lambda c: c[1]))


def find_pairs(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    image_dir: str = "images",
    mask_dir: str = "masks",
    mask_suffixes: Sequence[str] = MASK_SUFFIXES,
) -> tuple[list[Pair], str, int]:
    """Matches images with masks under ``root``.

    Returns:
        ``(pairs, resolved layout, number of U-KAN class folders or 1)``; pairs come in the order
        of their sorted image file names (as U-KAN's ``sorted(glob(...))``).

    Raises:
        FileNotFoundError: ``root`` or its image/mask folders are missing.
        ValueError: an image without a mask, ambiguous masks, duplicate ids, or no images.
    """
    root = check_path(root, "segmentation root")
    img_root = check_path(root / image_dir, "image folder")
    msk_root = check_path(root / mask_dir, "mask folder")
    if layout == "auto":
        layout = "ukan" if (msk_root / "0").is_dir() else "generic"
    if layout not in ("ukan", "generic"):
        raise ValueError(f"layout must be 'auto', 'ukan' or 'generic', got {layout!r}")
    same_dir = img_root.resolve() == msk_root.resolve()
    images = _files(img_root)
    if same_dir:
        images = [f for f in images if _mask_key(f.stem, mask_suffixes) is None]
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTS)}) found in {img_root}")
    stems: dict[str, Path] = {}
    for f in images:
        if f.stem in stems:
            raise ValueError(f"duplicate image id {f.stem!r}: {stems[f.stem]} and {f}")
        stems[f.stem] = f
    if layout == "ukan":
        class_dirs = sorted(
            (d for d in msk_root.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
        )
        if [int(d.name) for d in class_dirs] != list(range(len(class_dirs))):
            raise ValueError(
                f"U-KAN mask folders must be named 0..K-1, found {[d.name for d in class_dirs]} in {msk_root}"
            )
        indices = [(_index_masks(_files(d), mask_suffixes, allow_plain=True), d) for d in class_dirs]
        pairs = []
        for f in images:
            masks = []
            for index, d in indices:
                found = _masks_for(f, index, d)
                if len(found) != 1:
                    raise ValueError(f"ambiguous masks for {f} in {d}: {[p.name for p in found]}")
                masks.append(found[0])
            pairs.append(Pair(f.stem, f, tuple(masks)))
        return pairs, layout, len(class_dirs)
    mask_files = _files(msk_root)
    index = _index_masks(mask_files, mask_suffixes, allow_plain=not same_dir)
    pairs = [Pair(f.stem, f, _masks_for(f, index, msk_root)) for f in images]
    used = {p for pair in pairs for p in pair.masks}
    orphans = [m for m in mask_files if m not in used and (not same_dir or _mask_key(m.stem, mask_suffixes))]
    if orphans:
        warn_once(
            f"{len(orphans)} mask file(s) without an image in {msk_root}, ignored: "
            f"{[o.name for o in orphans[:5]]}"
        )
    return pairs, layout, 1


# --------------------------------------------------------------------------------------------- dataset


class SegmentationFolder(Dataset):
    """Image/mask pairs from a folder (see module docstring), one split or an explicit id list.

    Items: ``{"pixel_values": float[C,H,W], "mask": Long[H,W], "id": str, "orig_size": Long[2]}``.
    ``original_mask(i)`` / ``original_image(i)`` give the unresized data for evaluation at the
    original resolution.

    Args:
        root: Dataset folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (all ids, or ``ids``).
        ids: Explicit ids to use (overrides ``split``).
        split_file: JSON file with ``train``/``val``/``test`` id lists (default: the seeded one).
        seed: Split seed.
        val_fraction: Val fraction for a new split.
        test_fraction: Test fraction for a new split.
        layout: ``"auto"``, ``"ukan"`` or ``"generic"``.
        image_dir: Image folder name under ``root``.
        mask_dir: Mask folder name under ``root`` (may equal ``image_dir``).
        mask_suffixes: Suffixes a mask stem may add to its image stem.
        image_size: Output size (int or (h, w)); ``None`` keeps each image's size.
        in_chans: Image channels (1 or 3).
        mask_mode: ``"binary"`` or ``"multiclass"`` (U-KAN layouts with several class folders are
            always multiclass).
        num_classes: Number of classes in multiclass mode (default: from ``value_map``).
        mask_threshold: Binary threshold (``None`` = automatic, see ``masks.to_label_map``).
        value_map: ``{stored value or colour: class id}`` for multiclass masks (class id
            ``"ignore"`` or 255: ignored pixels).
        ignore_value: Stored mask value (or ``"r,g,b"`` colour) of pixels that no loss and no
            metric counts (label ``IGNORE_INDEX`` = 255); None: every pixel counts.
        mean: Normalization mean (default ImageNet's).
        std: Normalization std (default ImageNet's).
        augment: Random flips / 90° rotations (for training).
        check_sizes: Compare image and mask sizes from file headers at construction.
        validate: Decode every image and mask of the split once at construction, so a corrupt
            file, a non-finite pixel or a mask value outside the classes fails at once naming the
            file, not in the middle (or at the end) of training.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        split: str | None = None,
        ids: Sequence[str] | None = None,
        split_file: str | os.PathLike | None = None,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        layout: str = "auto",
        image_dir: str = "images",
        mask_dir: str = "masks",
        mask_suffixes: Sequence[str] = MASK_SUFFIXES,
        image_size: int | Sequence[int] | None = 64,
        in_chans: int = 3,
        mask_mode: str = "binary",
        num_classes: int | None = None,
        mask_threshold: float | None = None,
        value_map: Mapping[Any, int | str] | None = None,
        ignore_value: Any = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = False,
        check_sizes: bool = True,
        validate: bool = True,
    ) -> None:
        self.root = check_path(root, "segmentation root")
        pairs, self.layout, n_dirs = find_pairs(
            self.root, layout=layout, image_dir=image_dir, mask_dir=mask_dir, mask_suffixes=mask_suffixes
        )
        by_id = {p.id: p for p in pairs}
        self.split_path: Path | None = None
        if ids is not None:
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise ValueError(f"ids not found under {self.root}: {unknown[:5]}")
            chosen = list(ids)
        elif split is not None:
            splits, self.split_path = load_or_create_split(
                self.root,
                list(by_id),
                seed=seed,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                split_file=split_file,
            )
            if split not in splits:
                raise ValueError(f"split {split!r} not in {self.split_path} (has {sorted(splits)})")
            chosen = splits[split]
        else:
            chosen = list(by_id)
        self.pairs = [by_id[i] for i in chosen]
        self.ids = [p.id for p in self.pairs]
        if self.layout == "ukan" and n_dirs > 1:
            mask_mode, num_classes = "multiclass", n_dirs + 1
        self.mask_mode = mask_mode
        if mask_mode == "binary":
            num_classes = 2
        elif num_classes is None:
            classes = [v for v in (value_map or {}).values() if not _is_ignore_class(v)]
            if not classes:
                raise ValueError("multiclass masks need num_classes=... or value_map=...")
            num_classes = max(int(v) for v in classes) + 1
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 2 <= num_classes <= 255:
            raise ValueError(
                f"num_classes must be an integer in [2, 255] (255 is the ignore label), got {num_classes!r}"
            )
        self.num_classes = int(num_classes)
        self.ignore_value = ignore_value
        self.n_dirs = n_dirs
        self.size = as_size(image_size)
        self.in_chans = in_chans
        self.mask_threshold, self.value_map = mask_threshold, dict(value_map) if value_map else None
        self.mean, self.std = resolve_mean_std(in_chans, mean, std)
        self.augment = augment
        if check_sizes:
            for p in self.pairs:
                self._check_sizes(p)
        if validate:
            for i in range(len(self.pairs)):
                self._validate(i)

    def _validate(self, i: int) -> None:
        """Decode sample ``i`` (image and mask) the way ``__getitem__`` does; errors name the file."""
        self._load(i)

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.original_image(i), self.original_mask(i)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise ValueError(
                f"size mismatch: image {self.pairs[i].image} is {tuple(image.shape[-2:])} "
                f"but its mask is {tuple(mask.shape)}"
            )
        return image, mask

    @staticmethod
    def _check_sizes(p: Pair) -> tuple[int, int]:
        size = image_size_of(p.image)
        for m in p.masks:
            ms = image_size_of(m)
            if ms != size:
                raise ValueError(
                    f"size mismatch: image {p.image} is {size[1]}x{size[0]} but mask {m} is {ms[1]}x{ms[0]}"
                )
        return size

    def __len__(self) -> int:
        return len(self.pairs)

    def index_of(self, id_: str) -> int:
        """Position of an id in this dataset."""
        return self.ids.index(id_)

    def original_image(self, i: int) -> torch.Tensor:
        """Unresized, unnormalized image ``[C, H, W]`` in [0, 1]."""
        return torch.from_numpy(read_image(self.pairs[i].image, in_chans=self.in_chans))

    def original_mask(self, i: int) -> torch.Tensor:
        """Unresized label map ``[H, W]`` (int64)."""
        p = self.pairs[i]
        kw = {"threshold": self.mask_threshold, "ignore_value": self.ignore_value}
        if self.layout == "ukan" and self.n_dirs > 1:
            out = ignored = None
            for c, m in enumerate(p.masks):
                lm = to_label_map(read_mask_raw(m), mode="binary", name=str(m), **kw)
                if out is None:
                    out, ignored = np.zeros(lm.shape, dtype=np.int64), np.zeros(lm.shape, dtype=bool)
                elif lm.shape != out.shape:
                    raise ValueError(f"mask {m} is {lm.shape} but {p.masks[0]} is {out.shape}")
                out[lm == 1] = c + 1  # later class folders win overlaps
                ignored |= lm == IGNORE_INDEX
            out[ignored] = IGNORE_INDEX  # ignored in any class folder: ignored
            label = out
        else:
            label = None
            for m in p.masks:  # several numbered masks of one image are merged
                lm = to_label_map(
                    read_mask_raw(m),
                    mode=self.mask_mode,
                    value_map=self.value_map,
                    num_classes=self.num_classes,
                    name=str(m),
                    **kw,
                )
                label = lm if label is None else _merge_labels(label, lm)
        return torch.from_numpy(label)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        image, mask = self._load(i)
        orig = torch.tensor(image.shape[-2:], dtype=torch.long)
        image, mask = resize_pair(image, mask, self.size)
        if self.augment:
            image, mask = augment_pair(image, mask)
        return {
            "pixel_values": normalize(image, self.mean, self.std),
            "mask": mask,
            "id": p.id,
            "orig_size": orig,
        }


def _merge_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two label maps of one image (larger class wins; a pixel ignored in either stays ignored)."""
    if a.shape != b.shape:
        raise ValueError(f"masks of one image differ in size: {a.shape} vs {b.shape}")
    ignored = (a == IGNORE_INDEX) | (b == IGNORE_INDEX)
    out = np.maximum(np.where(a == IGNORE_INDEX, 0, a), np.where(b == IGNORE_INDEX, 0, b))
    out[ignored] = IGNORE_INDEX
    return out


def _predefined_split_roots(root: Path, image_dir: str) -> dict[str, Path] | None:
    found = {}
    for split, names in _SPLIT_DIRS.items():
        for n in names:
            if (root / n / image_dir).is_dir():
                found[split] = root / n
                break
    return found if "train" in found else None


@register_dataset("segmentation_folder", "Image/mask folders (U-KAN or generic layout) with split files")
def build_segmentation_folder(
    *,
    root: str | os.PathLike,
    layout: str = "auto",
    image_size: int | Sequence[int] | None = 64,
    in_chans: int = 3,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    split_file: str | os.PathLike | None = None,
    image_dir: str = "images",
    mask_dir: str = "masks",
    mask_suffixes: Sequence[str] = MASK_SUFFIXES,
    mask_mode: str = "binary",
    num_classes: int | None = None,
    mask_threshold: float | None = None,
    value_map: Mapping[Any, int | str] | None = None,
    ignore_value: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augment: bool = True,
    validate: bool = True,
) -> DataModule:
    """Segmentation from a folder (layouts and splits: see the module docstring).

    Args:
        root: Dataset folder (or a folder with ``train/``, ``val/``, ``test/`` sub-roots).
        layout: ``"auto"``, ``"ukan"`` or ``"generic"``.
        image_size: Training size (int or (h, w)); ``None`` keeps original sizes (batch size 1).
        in_chans: Image channels.
        seed: Split seed.
        val_fraction: Val fraction of a new split (0.2 = U-KAN's 80/20).
        test_fraction: Test fraction of a new split.
        split_file: An explicit split JSON (``train``/``val``/``test`` id lists).
        image_dir: Image folder name.
        mask_dir: Mask folder name.
        mask_suffixes: Suffixes a mask stem may add to its image stem.
        mask_mode: ``"binary"`` or ``"multiclass"``.
        num_classes: Classes in multiclass mode.
        mask_threshold: Binary threshold (``None`` = automatic).
        value_map: ``{stored value or colour: class id}`` (class ``"ignore"`` or 255: ignored).
        ignore_value: Stored mask value (or ``"r,g,b"``) of pixels no loss or metric counts, e.g.
            255 in a 0/1 mask; they get label 255 (``kanzoo.data.masks.IGNORE_INDEX``).
        mean: Normalization mean (default ImageNet's, as in U-KAN).
        std: Normalization std.
        augment: Flips / 90° rotations on the train split.
        validate: Decode every image and mask once up front (corrupt files, non-finite pixels and
            mask values outside the classes fail before training starts, naming the file).
    """
    root = check_path(root, "segmentation root")
    common = {
        "layout": layout,
        "image_dir": image_dir,
        "mask_dir": mask_dir,
        "mask_suffixes": mask_suffixes,
        "image_size": image_size,
        "in_chans": in_chans,
        "mask_mode": mask_mode,
        "num_classes": num_classes,
        "mask_threshold": mask_threshold,
        "value_map": value_map,
        "ignore_value": ignore_value,
        "mean": mean,
        "std": std,
        "validate": validate,
    }
    with _undo_new_split_files():
        train, val, test, split_info = _build_splits(
            root, common, augment=augment, seed=seed, val_fraction=val_fraction,
            test_fraction=test_fraction, split_file=split_file, image_dir=image_dir,
        )  # fmt: skip
    return DataModule(
        task="segmentation",
        train=train,
        val=val,
        test=test,
        info={
            "num_classes": train.num_classes,
            "in_chans": in_chans,
            "image_size": image_size,
            "mean": train.mean,
            "std": train.std,
            "layout": train.layout,
            "split": split_info,
            "source": str(root),
            "ignore_index": IGNORE_INDEX,
            "ignore_value": ignore_value,
        },
    )


def _build_splits(root, common, *, augment, seed, val_fraction, test_fraction, split_file, image_dir):
    sub = _predefined_split_roots(root, image_dir) if split_file is None else None
    if sub is not None:
        if "val" in sub:
            train = SegmentationFolder(root=sub["train"], augment=augment, **common)
            val = SegmentationFolder(root=sub["val"], **common)
        else:  # carve val out of the train folder with a split file there
            kw = {"seed": seed, "val_fraction": val_fraction}
            train = SegmentationFolder(root=sub["train"], split="train", augment=augment, **kw, **common)
            val = SegmentationFolder(root=sub["train"], split="val", **kw, **common)
        test = SegmentationFolder(root=sub["test"], **common) if "test" in sub else None
        split_info = {k: str(v) for k, v in sub.items()}
    else:
        kw = {
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "split_file": split_file,
        }
        train = SegmentationFolder(root=root, split="train", augment=augment, **kw, **common)
        val = SegmentationFolder(root=root, split="val", **kw, **common)
        test = None
        if split_file is not None or test_fraction > 0:
            splits = json.loads(Path(train.split_path).read_text())
            if splits.get("test"):
                test = SegmentationFolder(root=root, split="test", **kw, **common)
        split_info = str(train.split_path)
    return train, val, test, split_info
