"""Segmentation from Hugging Face datasets with an image column and a mask column."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DataModule, as_size, normalize, register_dataset, resolve_mean_std
from .image import load_hf_dataset, split_hf
from .masks import IGNORE_INDEX, _is_ignore_class, augment_pair, image_to_array, resize_pair, to_label_map

_MASK_COLUMNS = ("mask", "annotation", "label", "segmentation", "seg", "masks")
_IMAGE_COLUMNS = ("image", "img", "pixel_values")
_ID_COLUMNS = ("id", "image_id", "name", "file_name", "filename")


def _raw_mask(value: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(value, Image.Image):
        im = value
        if im.mode in ("RGBA", "CMYK", "YCbCr"):
            im = im.convert("RGB")
        elif im.mode in ("LA", "PA"):
            im = im.convert("L")
        arr = np.asarray(im)
    else:
        arr = np.asarray(value)
    return arr.astype(np.uint8) if arr.dtype == bool else arr


class HFSegmentation(Dataset):
    """Wraps an HF dataset split; items as in :class:`~kanzoo.data.segmentation.SegmentationFolder`.

    Args:
        hf: The HF ``datasets.Dataset``.
        image_column: Image column.
        mask_column: Mask column (PIL images or arrays).
        id_column: Column with sample ids (``None``: ``"{split}_{index:06d}"``).
        split: Split name used in generated ids.
        image_size: Output size; ``None`` keeps each image's size.
        in_chans: Image channels.
        mask_mode: ``"binary"`` or ``"multiclass"``.
        num_classes: Classes (multiclass).
        mask_threshold: Binary threshold (``None`` = automatic).
        value_map: ``{stored value or colour: class id}`` (class ``"ignore"`` or 255: ignored).
        ignore_value: Stored mask value (or colour) of ignored pixels (label 255).
        mean: Normalization mean.
        std: Normalization std.
        augment: Random flips / 90° rotations.
    """

    def __init__(
        self,
        *,
        hf: Any,
        image_column: str,
        mask_column: str,
        id_column: str | None = None,
        split: str = "train",
        image_size: int | Sequence[int] | None = 64,
        in_chans: int = 3,
        mask_mode: str = "binary",
        num_classes: int = 2,
        mask_threshold: float | None = None,
        value_map: Mapping[Any, int | str] | None = None,
        ignore_value: Any = None,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        augment: bool = False,
    ) -> None:
        self.ignore_value = ignore_value
        self.hf, self.image_column, self.mask_column = hf, image_column, mask_column
        self.split, self.size, self.in_chans = split, as_size(image_size), in_chans
        self.mask_mode, self.num_classes = mask_mode, num_classes
        self.mask_threshold, self.value_map = mask_threshold, value_map
        self.mean, self.std, self.augment = tuple(mean), tuple(std), augment
        self.ids = (
            [str(v) for v in hf[id_column]] if id_column else [f"{split}_{i:06d}" for i in range(len(hf))]
        )

    def __len__(self) -> int:
        return len(self.hf)

    def _row(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.hf[int(i)]
        where = f"row {i} ({self.ids[i]}) of the {self.split!r} split"
        image = torch.from_numpy(image_to_array(row[self.image_column], in_chans=self.in_chans, name=where))
        label = to_label_map(
            _raw_mask(row[self.mask_column]),
            mode=self.mask_mode,
            threshold=self.mask_threshold,
            value_map=self.value_map,
            num_classes=self.num_classes,
            ignore_value=self.ignore_value,
            name=f"mask of {where}",
        )
        if tuple(image.shape[-2:]) != label.shape[:2]:
            raise ValueError(
                f"size mismatch in {where}: image {tuple(image.shape[-2:])} vs mask {label.shape[:2]}"
            )
        return image, torch.from_numpy(label)

    def original_image(self, i: int) -> torch.Tensor:
        """Unresized, unnormalized image ``[C, H, W]`` in [0, 1]."""
        return self._row(i)[0]

    def original_mask(self, i: int) -> torch.Tensor:
        """Unresized label map ``[H, W]``."""
        return self._row(i)[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, mask = self._row(i)
        orig = torch.tensor(image.shape[-2:], dtype=torch.long)
        image, mask = resize_pair(image, mask, self.size)
        if self.augment:
            image, mask = augment_pair(image, mask)
        return {
            "pixel_values": normalize(image, self.mean, self.std),
            "mask": mask,
            "id": self.ids[i],
            "orig_size": orig,
        }


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{what} column {wanted!r} not in {list(columns)}")
        return wanted
    return next((c for c in candidates if c in columns), None)


@register_dataset("hf_segmentation", "HF dataset (saved folder or hub name) with image and mask columns")
def build_hf_segmentation(
    *,
    path_or_hub_name: str | os.PathLike,
    image_column: str | None = None,
    mask_column: str | None = None,
    id_column: str | None = None,
    config_name: str | None = None,
    image_size: int | Sequence[int] | None = 64,
    in_chans: int = 3,
    mask_mode: str = "binary",
    num_classes: int | None = None,
    mask_threshold: float | None = None,
    value_map: Mapping[Any, int | str] | None = None,
    ignore_value: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augment: bool = True,
) -> DataModule:
    """Segmentation from a ``save_to_disk`` folder or a hub dataset.

    Val comes from the dataset's validation split, else it is carved from train with
    ``Dataset.train_test_split(test_size=val_fraction, seed=seed)`` (deterministic).

    Args:
        path_or_hub_name: Saved dataset folder or hub name.
        image_column: Image column (auto: image/img/pixel_values).
        mask_column: Mask column (auto: mask/annotation/label/segmentation/...).
        id_column: Id column (auto: id/image_id/name/file_name; else generated ids).
        config_name: Hub configuration name.
        image_size: Output size; ``None`` keeps original sizes.
        in_chans: Image channels.
        mask_mode: ``"binary"`` or ``"multiclass"``.
        num_classes: Classes in multiclass mode (default: from ``value_map``).
        mask_threshold: Binary threshold (``None`` = automatic).
        value_map: ``{stored value or colour: class id}`` (class ``"ignore"`` or 255: ignored).
        ignore_value: Stored mask value (or ``"r,g,b"``) of pixels no loss or metric counts
            (label 255, ``kanzoo.data.masks.IGNORE_INDEX``).
        val_fraction: Val fraction carved from train when there is no validation split.
        seed: Split seed.
        mean: Normalization mean (default ImageNet's).
        std: Normalization std.
        augment: Flips / 90° rotations on the train split.
    """
    ds = load_hf_dataset(path_or_hub_name, config_name=config_name)
    cols = ds[next(iter(ds))].column_names
    img_col = _pick(cols, image_column, _IMAGE_COLUMNS, "image")
    msk_col = _pick(cols, mask_column, _MASK_COLUMNS, "mask")
    if img_col is None or msk_col is None:
        raise ValueError(f"need image and mask columns, found {cols}; pass image_column=/mask_column=")
    id_col = _pick(cols, id_column, _ID_COLUMNS, "id")
    train, val, test = split_hf(ds, val_fraction=val_fraction, seed=seed)
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
    mean, std = resolve_mean_std(in_chans, mean, std)
    kw = {
        "image_column": img_col,
        "mask_column": msk_col,
        "id_column": id_col,
        "image_size": image_size,
        "in_chans": in_chans,
        "mask_mode": mask_mode,
        "num_classes": num_classes,
        "mask_threshold": mask_threshold,
        "value_map": value_map,
        "ignore_value": ignore_value,
        "mean": mean,
        "std": std,
    }
    return DataModule(
        task="segmentation",
        train=HFSegmentation(hf=train, split="train", augment=augment, **kw),
        val=HFSegmentation(hf=val, split="val", **kw),
        test=None if test is None else HFSegmentation(hf=test, split="test", **kw),
        info={
            "num_classes": num_classes,
            "in_chans": in_chans,
            "image_size": image_size,
            "mean": mean,
            "std": std,
            "source": str(path_or_hub_name),
            "ignore_index": IGNORE_INDEX,
            "ignore_value": ignore_value,
        },
    )
