"""Image classification data: ``imagefolder`` dirs, saved HF datasets, hub names, and sklearn digits.

Transforms come from timm's data config (``timm.data.create_transform``): random-resized-crop +
flip for training (``augment=True``), resize + center crop (crop_pct 1.0) for evaluation, then
normalization with ``mean``/``std``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kanzoo._hub import load_hub_dataset

from .base import DataModule, check_int, check_path, normalize, register_dataset, resolve_mean_std

_IMAGE_COLUMNS = ("image", "img", "pixel_values", "png", "jpg")
_LABEL_COLUMNS = ("label", "labels", "fine_label", "class", "target")
_VAL_SPLITS = ("validation", "valid", "val", "dev")


def timm_transform(
    *,
    image_size: int,
    in_chans: int,
    mean: Sequence[float],
    std: Sequence[float],
    training: bool,
    scale: tuple[float, float] = (0.35, 1.0),
    hflip: float = 0.5,
    interpolation: str = "bilinear",
) -> Callable:
    """A timm transform (PIL image -> normalized ``[C, H, W]`` float tensor).

    Args:
        image_size: Output side length.
        in_chans: Channels of the output (1 = grayscale, 3 = RGB); the PIL image is converted first.
        mean: Per-channel mean for normalization.
        std: Per-channel std for normalization.
        training: Random-resized-crop + flip when true; resize + center crop when false.
        scale: Area range of the random-resized crop (timm's default (0.08, 1) is harsh for tiny images).
        hflip: Horizontal flip probability.
        interpolation: Resize interpolation.
    """
    from timm.data import create_transform, resolve_data_config

    check_int("image_size", image_size, minimum=1, maximum=65536)
    if in_chans not in (1, 3):
        raise ValueError(f"image datasets support in_chans 1 or 3, got {in_chans}")

    cfg = resolve_data_config(
        {
            "input_size": (in_chans, image_size, image_size),
            "interpolation": interpolation,
            "mean": tuple(mean),
            "std": tuple(std),
            "crop_pct": 1.0,
        }
    )
    kw: dict[str, Any] = {"scale": scale, "hflip": hflip, "color_jitter": None} if training else {}
    tf = create_transform(**cfg, is_training=training, **kw)
    if in_chans not in (1, 3):
        raise ValueError(f"image datasets support in_chans 1 or 3, got {in_chans}")
    return ConvertThen(mode="L" if in_chans == 1 else "RGB", transform=tf)


class ConvertThen:
    """Converts a PIL image to ``mode`` then applies ``transform`` (a picklable callable, so
    loader workers started by spawn can receive it)."""

    def __init__(self, *, mode: str, transform: Callable) -> None:
        self.mode, self.transform = mode, transform

    def __call__(self, img) -> torch.Tensor:
        return self.transform(img.convert(self.mode))


class HFImageClassification(Dataset):
    """Wraps an HF ``datasets.Dataset`` with an image column and an integer label column.

    Args:
        hf: The HF dataset.
        transform: PIL image -> tensor.
        image_column: Image column name.
        label_column: Label column name.
    """

    def __init__(self, *, hf: Any, transform: Callable, image_column: str, label_column: str) -> None:
        self.hf, self.transform = hf, transform
        self.image_column, self.label_column = image_column, label_column

    def __len__(self) -> int:
        return len(self.hf)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.hf[int(i)]
        img = row[self.image_column]
        if not hasattr(img, "convert"):
            from PIL import Image

            img = Image.fromarray(np.asarray(img))
        return {"pixel_values": self.transform(img), "labels": torch.tensor(int(row[self.label_column]))}


class TensorClassification(Dataset):
    """In-memory images ``[N, C, H, W]`` (already normalized) with labels ``[N]``."""

    def __init__(self, *, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.images[i], "labels": self.labels[i]}


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{what} column {wanted!r} not in {list(columns)}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    raise ValueError(f"no {what} column found among {list(columns)}; pass {what}_column=...")


def load_hf_dataset(
    path_or_hub_name: str | os.PathLike, *, builder: str | None = None, config_name: str | None = None
):
    """A ``DatasetDict`` from a ``save_to_disk`` folder, a builder over a folder, or a hub name.

    Raises:
        FileNotFoundError: a path-looking argument does not exist, or the hub is unreachable.
    """
    import datasets

    s = str(path_or_hub_name)
    p = Path(s).expanduser()
    if builder is not None:
        check_path(p, "image folder")
        ds = datasets.load_dataset(builder, data_dir=str(p))
    elif p.exists():
        ds = datasets.load_from_disk(str(p))
    elif s.startswith((".", "/", "~")) or s.count("/") > 1:
        raise FileNotFoundError(f"dataset path not found: {p}")
    else:
        ds = load_hub_dataset(s, config_name, hint="pass a save_to_disk folder or an image folder instead")
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    return ds


def split_hf(
    ds, *, val_fraction: float, seed: int, stratify_column: str | None = None
) -> tuple[Any, Any, Any]:
    """(train, val, test) from a DatasetDict; val is carved deterministically from train if absent."""
    if "train" not in ds:
        raise ValueError(f"dataset has no 'train' split (splits: {list(ds)})")
    val_key = next((k for k in _VAL_SPLITS if k in ds), None)
    test = ds["test"] if "test" in ds else None
    if val_key is not None:
        return ds["train"], ds[val_key], test
    import datasets

    train = ds["train"]
    strat = None
    if stratify_column and isinstance(train.features.get(stratify_column), datasets.ClassLabel):
        strat = stratify_column
    try:
        parts = train.train_test_split(test_size=val_fraction, seed=seed, stratify_by_column=strat)
    except ValueError:  # too few items per class to stratify
        parts = train.train_test_split(test_size=val_fraction, seed=seed)
    return parts["train"], parts["test"], test


def check_labels(part: Any, column: str, *, num_classes: int, split: str, source: str) -> None:
    """Every label of ``part[column]`` is an integer class id in ``[0, num_classes)``."""
    labels = np.asarray(part[column])
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: labels in column {column!r} of the {split} split must be integers")
    bad = np.nonzero((labels < 0) | (labels >= num_classes))[0]
    if bad.size:
        raise ValueError(
            f"{source}: the {split} split has {bad.size} label(s) outside 0..{num_classes - 1} (first: row "
            f"{int(bad[0])}, label {int(labels[bad[0]])}); the classes come from the train split"
        )


def check_images(part: Any, column: str, *, split: str, source: str) -> None:
    """Decode every image of ``part[column]`` once; a corrupt one raises ``ValueError`` naming it."""
    import io

    import datasets
    from PIL import Image

    feature = part.features.get(column)
    if not isinstance(feature, datasets.Image):
        return  # arrays or tensors: nothing to decode
    raw = part.cast_column(column, datasets.Image(decode=False))
    for i, cell in enumerate(raw[column]):
        where = (cell or {}).get("path") or f"row {i} of the {split} split of {source}"
        try:
            data = cell.get("bytes") if cell else None
            with Image.open(io.BytesIO(data) if data else cell["path"]) as im:
                im.load()
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
            raise ValueError(f"unreadable image {where}: {type(err).__name__}: {err}") from None


def image_classification_from_hf(
    ds,
    *,
    image_size: int,
    in_chans: int,
    image_column: str | None,
    label_column: str | None,
    val_fraction: float,
    seed: int,
    augment: bool,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    source: str,
    validate: bool = True,
) -> DataModule:
    """Shared body of the ``image_folder`` and ``hf_image`` builders.

    Labels of every split are checked against the classes up front (a val label out of range must
    not surface at the final evaluation), and with ``validate`` every image is decoded once, so a
    corrupt file fails before training, naming it.
    """
    import datasets

    first = ds[next(iter(ds))]
    img_col = _pick(first.column_names, image_column, _IMAGE_COLUMNS, "image")
    lab_col = _pick(first.column_names, label_column, _LABEL_COLUMNS, "label")
    train, val, test = split_hf(ds, val_fraction=val_fraction, seed=seed, stratify_column=lab_col)
    feat = train.features.get(lab_col)
    if isinstance(feat, datasets.ClassLabel):
        class_names = list(feat.names)
    else:
        class_names = [str(c) for c in sorted(set(train[lab_col]))]
        if class_names != [str(i) for i in range(len(class_names))]:
            raise ValueError(f"labels in column {lab_col!r} must be 0..K-1 integers or a ClassLabel feature")
    for name, part in (("train", train), ("val", val), ("test", test)):
        if part is not None:
            check_labels(part, lab_col, num_classes=len(class_names), split=name, source=source)
            if validate:
                check_images(part, img_col, split=name, source=source)
    mean, std = resolve_mean_std(in_chans, mean, std)
    kw = {"image_size": image_size, "in_chans": in_chans, "mean": mean, "std": std}
    train_tf = timm_transform(**kw, training=augment)
    eval_tf = timm_transform(**kw, training=False)
    wrap = {"image_column": img_col, "label_column": lab_col}
    return DataModule(
        task="classification",
        train=HFImageClassification(hf=train, transform=train_tf, **wrap),
        val=HFImageClassification(hf=val, transform=eval_tf, **wrap),
        test=None if test is None else HFImageClassification(hf=test, transform=eval_tf, **wrap),
        info={
            "num_classes": len(class_names),
            "in_chans": in_chans,
            "image_size": image_size,
            "class_names": class_names,
            "mean": mean,
            "std": std,
            "source": source,
        },
    )


@register_dataset(
    "image_folder", "A folder of class subfolders (HF `imagefolder`), optional train/val/test dirs"
)
def build_image_folder(
    *,
    path: str | os.PathLike,
    image_size: int = 32,
    in_chans: int = 3,
    val_fraction: float = 0.1,
    seed: int = 0,
    augment: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    validate: bool = True,
) -> DataModule:
    """Classification from ``<path>/<class>/*.png`` (or ``<path>/{train,validation,test}/<class>/...``).

    Args:
        path: The image folder.
        image_size: Side length fed to the model.
        in_chans: 1 (grayscale) or 3 (RGB).
        val_fraction: Val fraction carved (stratified, seeded) from train when there is no val split.
        seed: Split seed.
        augment: Random-resized-crop + flip on the train split.
        mean: Normalization mean (default ImageNet's).
        std: Normalization std (default ImageNet's).
        validate: Decode every image once up front (a corrupt file fails at once, naming it).
    """
    ds = load_hf_dataset(path, builder="imagefolder")
    return image_classification_from_hf(
        ds,
        image_size=image_size,
        in_chans=in_chans,
        image_column="image",
        label_column="label",
        val_fraction=val_fraction,
        seed=seed,
        augment=augment,
        mean=mean,
        std=std,
        source=str(path),
        validate=validate,
    )


@register_dataset("hf_image", "A saved HF image dataset (`save_to_disk` folder) or a hub name")
def build_hf_image(
    *,
    path: str | os.PathLike,
    image_size: int = 32,
    in_chans: int = 3,
    image_column: str | None = None,
    label_column: str | None = None,
    config_name: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    augment: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    validate: bool = True,
) -> DataModule:
    """Classification from a ``save_to_disk`` folder or a hub dataset (e.g. ``"cifar10"`` online).

    Args:
        path: Saved dataset folder or hub name.
        image_size: Side length fed to the model.
        in_chans: 1 or 3.
        image_column: Image column (auto-detected from image/img/... when None).
        label_column: Label column (auto-detected from label/labels/fine_label/... when None).
        config_name: Hub configuration name.
        val_fraction: Val fraction carved from train when there is no validation split.
        seed: Split seed.
        augment: Random-resized-crop + flip on the train split.
        mean: Normalization mean (default ImageNet's).
        std: Normalization std (default ImageNet's).
        validate: Decode every image once up front (a corrupt file fails at once, naming it).
    """
    ds = load_hf_dataset(path, config_name=config_name)
    return image_classification_from_hf(
        ds,
        image_size=image_size,
        in_chans=in_chans,
        image_column=image_column,
        label_column=label_column,
        val_fraction=val_fraction,
        seed=seed,
        augment=augment,
        mean=mean,
        std=std,
        source=str(path),
        validate=validate,
    )


@register_dataset(
    "digits", "sklearn's 8x8 handwritten digits (1797 images, 10 classes), upsampled", embedded=True
)
def build_digits(
    *,
    image_size: int = 32,
    in_chans: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataModule:
    """sklearn's digits (embedded; offline), bilinearly upsampled from 8x8 to ``image_size``.

    The split is stratified and seeded (``train_test_split(random_state=seed)``). Pixels are scaled
    to [0, 1] and normalized with the train split's mean/std unless given.

    Args:
        image_size: Output side length (8 keeps the original resolution).
        in_chans: 1, or 3 (the gray channel repeated).
        val_fraction: Fraction of images used as val.
        seed: Split seed.
        mean: Normalization mean (default: the train pixels' mean).
        std: Normalization std (default: the train pixels' std).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if in_chans not in (1, 3):
        raise ValueError(f"digits supports in_chans 1 or 3, got {in_chans}")
    check_int("image_size", image_size, minimum=1, maximum=4096)
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=d.target)
    if mean is None or std is None:
        m, s = float(x[tr].mean()), float(x[tr].std())
        mean, std = mean or (m,) * in_chans, std or (s,) * in_chans
    mean, std = resolve_mean_std(in_chans, mean, std)
    x = x.expand(-1, in_chans, -1, -1)
    x = normalize(x, mean, std).contiguous()
    return DataModule(
        task="classification",
        train=TensorClassification(images=x[tr], labels=y[tr]),
        val=TensorClassification(images=x[va], labels=y[va]),
        info={
            "num_classes": 10,
            "in_chans": in_chans,
            "image_size": image_size,
            "class_names": [str(i) for i in range(10)],
            "mean": mean,
            "std": std,
            "source": "sklearn.datasets.load_digits",
        },
    )
