"""Medical segmentation benchmarks: expected on-disk layout, standard split, clear setup errors.

Every benchmark is read from the U-KAN folder layout (``<data_root>/<dirname>``)::

    inputs/busi/
      images/benign (1).png ...             one image per id
      masks/0/benign (1)_mask.png ...       the binary mask of class 0 (foreground), same id + suffix

kanzoo reads the files through ``kanzoo.data.build_data("segmentation_folder", layout="ukan", ...)``;
this module only knows each benchmark's names, extensions, sizes and splits, checks that the files
are there, and says exactly where to put them when they are not. ``data_root`` defaults to
``$KANZOO_DATA`` or ``./inputs``.

Splits: none of these sets except GlaS and ISIC-2018 has an official split; kanzoo uses U-KAN's
(80/20 of the sorted ids, ``train_test_split(random_state=2981)``) so numbers are comparable with the
U-KAN paper. GlaS keeps its official train/test split when the file names still carry the
``train_``/``testA_``/``testB_`` prefixes, ISIC-2018 its official validation/test sets when they are
put in an ``images_test`` folder beside ``images`` (masks in ``masks_test/0``).

Masks: BUSI, CVC-ClinicDB and ISIC-2018 masks must hold only 0/255 (or 0/1); any other value raises
an error naming the file. GlaS masks are instance maps (any value > 0 is gland) and Kvasir-SEG's are
JPEG (binarized at > 127).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import IMAGENET_MEAN, IMAGENET_STD, DataModule, list_datasets, random_split_ids, register_dataset
from .masks import read_mask_raw
from .segmentation import SegmentationFolder

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "benchmark_ids",
    "benchmark_splits",
    "build_benchmark",
    "check_benchmark",
    "data_root",
    "get_benchmark",
]


@dataclass(frozen=True)
class BenchmarkSpec:
    """What one benchmark looks like on disk.

    Args:
        name: config name (``data=<name>``).
        title: human name.
        dirname: folder under the data root.
        image_ext: image file extension (with the dot).
        mask_suffix: what follows the id in a mask file name (suffix + extension).
        image_size: training/evaluation resolution used by U-KAN (or common practice).
        num_images: number of images of the usual release (for a sanity message only).
        source: where to download it.
        split: description of the standard split.
        example_id: one id, shown in the layout message.
    """

    name: str
    title: str
    dirname: str
    image_ext: str
    mask_suffix: str
    image_size: int
    num_images: int
    source: str
    split: str
    example_id: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    mask_threshold: int | None = None
    binary_masks: bool = True


_UKAN_SPLIT = "80/20 split of the sorted ids, sklearn train_test_split(random_state=2981) as U-KAN"

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            name="busi",
            title="BUSI (Breast Ultrasound Images)",
            dirname="busi",
            image_ext=".png",
            mask_suffix="_mask.png",
            image_size=256,
            num_images=780,
            source="https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset",
            split=_UKAN_SPLIT,
            example_id="benign (1)",
            notes=(
                "Images with several masks (`_mask_1.png`, ...) must be merged into one `_mask.png` "
                "(pixel-wise maximum); U-KAN's preprocessed release already is.",
            ),
        ),
        BenchmarkSpec(
            name="glas",
            title="GlaS (Gland Segmentation, MICCAI 2015)",
            dirname="glas",
            image_ext=".png",
            mask_suffix=".png",
            image_size=512,
            num_images=165,
            source="https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest",
            split="official 85 train / 80 test when ids keep the train_/testA_/testB_ prefixes, else "
            + _UKAN_SPLIT,
            example_id="train_1",
            notes=("Annotations are gland instances: any value > 0 is foreground.",),
            mask_threshold=0,
            binary_masks=False,
        ),
        BenchmarkSpec(
            name="cvc_clinicdb",
            title="CVC-ClinicDB (colonoscopy polyps)",
            dirname="cvc_clinicdb",
            image_ext=".png",
            mask_suffix=".png",
            image_size=256,
            num_images=612,
            source="https://polyp.grand-challenge.org/CVCClinicDB/",
            split=_UKAN_SPLIT,
            example_id="1",
            notes=("The original release is TIFF (`Original/1.tif`, `Ground Truth/1.tif`): convert to PNG.",),
        ),
        BenchmarkSpec(
            name="kvasir_seg",
            title="Kvasir-SEG (gastrointestinal polyps)",
            dirname="kvasir_seg",
            image_ext=".jpg",
            mask_suffix=".jpg",
            image_size=256,
            num_images=1000,
            source="https://datasets.simula.no/kvasir-seg/",
            split=_UKAN_SPLIT,
            example_id="cju0qkwl35piu0993l0dewei2",
            notes=("Masks are JPEG: they are binarized at > 127 to undo compression noise.",),
            mask_threshold=127,
            binary_masks=False,
        ),
        BenchmarkSpec(
            name="isic2018",
            title="ISIC-2018 Task 1 (skin lesion boundary)",
            dirname="isic2018",
            image_ext=".jpg",
            mask_suffix="_segmentation.png",
            image_size=256,
            num_images=2594,
            source="https://challenge.isic-archive.com/data/#2018",
            split="80/20 of the official training set (sorted ids, train_test_split(random_state=2981)) "
            "for train/val; the official test set when given as images_test/ + masks_test/0/",
            example_id="ISIC_0000000",
        ),
    )
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the benchmark folders: ``root``, else ``$KANZOO_DATA``, else ``./inputs``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("KANZOO_DATA", "inputs")).expanduser()


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of a benchmark by config name (unknown names list the known ones)."""
    key = name.lower().replace("-", "_")
    if key not in BENCHMARKS:
        import difflib

        close = difflib.get_close_matches(key, list(BENCHMARKS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown benchmark {name!r}.{hint} Known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def layout_help(spec: BenchmarkSpec, folder: Path) -> str:
    """A multi-line description of where the files go."""
    lines = [
        f"{spec.title}: download it from {spec.source} and arrange it as",
        f"  {folder}/",
        f"    images/{spec.example_id}{spec.image_ext}        (one image per id, ~{spec.num_images} images)",
        f"    masks/0/{spec.example_id}{spec.mask_suffix}    (its binary mask: 0 = background, >0 = lesion)",
        "(the U-KAN layout). Set KANZOO_DATA or data.root to use another parent folder than "
        f"{folder.parent}.",
    ]
    lines += [f"Note: {n}" for n in spec.notes]
    return "\n".join(lines)


def benchmark_ids(
    spec: BenchmarkSpec, folder: Path, images: str = "images", masks: str = "masks"
) -> list[str]:
    """Sorted ids under ``folder/images`` after checking that every image has its mask.

    Raises:
        FileNotFoundError: missing folder or no image (the message shows the expected layout).
        ValueError: an image without its mask (the message names the image and the expected mask path).
    """
    img_dir, mask_dir = folder / images, folder / masks / "0"
    for d in (folder, img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d} does not exist.\n{layout_help(spec, folder)}")
    ids = sorted(p.name[: -len(spec.image_ext)] for p in img_dir.iterdir() if p.name.endswith(spec.image_ext))
    if not ids:
        raise FileNotFoundError(f"no *{spec.image_ext} image in {img_dir}.\n{layout_help(spec, folder)}")
    for i in ids:
        if not (mask_dir / f"{i}{spec.mask_suffix}").is_file():
            raise ValueError(
                f"image {img_dir / (i + spec.image_ext)} has no mask: "
                f"expected {mask_dir / (i + spec.mask_suffix)}"
            )
    return ids


def check_benchmark(
    name: str, root: str | os.PathLike | None = None
) -> tuple[BenchmarkSpec, Path, list[str]]:
    """Validate a benchmark folder: returns ``(spec, folder, ids)`` or raises a setup error."""
    spec = get_benchmark(name)
    folder = (data_root(root) / spec.dirname).absolute()
    return spec, folder, benchmark_ids(spec, folder)


_GLAS_PREFIXES = ("train_", "testA_", "testB_")


def benchmark_splits(
    spec: BenchmarkSpec, folder: Path, ids: list[str], *, seed: int = 2981, protocol: str = "per_image"
) -> dict[str, list[str]]:
    """The standard split of a benchmark as id lists in loader order (``train``, ``val``, maybe ``test``).

    ``protocol="ukan"`` always uses U-KAN's 80/20 split (val = what U-KAN reports); otherwise GlaS
    uses its official split when the ids carry the official prefixes.
    """
    if protocol != "ukan" and spec.name == "glas" and all(i.startswith(_GLAS_PREFIXES) for i in ids):
        train = [i for i in ids if i.startswith("train_")]
        test = [i for i in ids if not i.startswith("train_")]
        # the official release has no validation set: report on the official test set for val and test
        return {"train": train, "val": test, "test": test}
    # U-KAN's split: train_test_split(sorted ids, test_size=0.2, random_state=seed)
    parts = random_split_ids(ids, val_fraction=0.2, seed=seed)
    return {"train": parts["train"], "val": parts["val"]}


def build_benchmark(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    protocol: str = "per_image",
    image_size: int | None = None,
    seed: int = 2981,
    in_chans: int = 3,
    augment: bool = True,
    mean: tuple[float, ...] | list[float] | None = None,
    std: tuple[float, ...] | list[float] | None = None,
):
    """Build a benchmark's DataModule after checking its folder (errors say where files go).

    Args:
        name: ``busi``, ``glas``, ``cvc_clinicdb``, ``kvasir_seg`` or ``isic2018``.
        root: the folder holding the benchmark folders (default ``$KANZOO_DATA`` or ``./inputs``).
        protocol: ``"per_image"`` or ``"ukan"`` (the split, see :func:`benchmark_splits`).
        image_size: model input size (default: the benchmark's usual size, e.g. 256; GlaS 512).
        seed: split seed (2981 = U-KAN's default ``--dataseed``).
        in_chans: image channels.
        augment: flips/rotations on the train split.
        mean: normalization mean (default ImageNet's, as U-KAN).
        std: normalization std (default ImageNet's).
    """
    spec, folder, ids = check_benchmark(name, root)
    splits = benchmark_splits(spec, folder, ids, seed=seed, protocol=protocol)
    test_dir = folder / "images_test"
    size = int(image_size or spec.image_size)
    mean = tuple(mean) if mean is not None else IMAGENET_MEAN
    std = tuple(std) if std is not None else IMAGENET_STD
    if protocol == "ukan" and (tuple(mean) != IMAGENET_MEAN or tuple(std) != IMAGENET_STD):
        raise ValueError("protocol=ukan uses ImageNet normalization; do not override mean/std")
    common = dict(layout="ukan", image_size=size, in_chans=in_chans, mask_mode="binary",
                  mask_threshold=spec.mask_threshold, mean=mean, std=std)  # fmt: skip

    def part(ids_: list[str], *, aug: bool = False, image_dir: str = "images", mask_dir: str = "masks"):
        return BenchmarkFolder(
            spec=spec, root=folder, ids=ids_, augment=aug, image_dir=image_dir, mask_dir=mask_dir, **common
        )

    train = part(splits["train"], aug=augment)
    val = part(splits["val"])
    test = part(splits["test"]) if "test" in splits else None
    if test is None and test_dir.is_dir():
        test_ids = benchmark_ids(spec, folder, images="images_test", masks="masks_test")
        test = part(test_ids, image_dir="images_test", mask_dir="masks_test")
    return DataModule(
        task="segmentation",
        train=train,
        val=val,
        test=test,
        info={
            "name": spec.name,
            "num_classes": 2,
            "in_chans": in_chans,
            "image_size": size,
            "mean": mean,
            "std": std,
            "layout": "ukan",
            "split": spec.split if protocol != "ukan" else "U-KAN: " + _UKAN_SPLIT,
            "seed": seed,
            "source": str(folder),
        },
    )


class BenchmarkFolder(SegmentationFolder):
    """``SegmentationFolder`` that also rejects mask files holding values other than 0/255 (or 0/1).

    Args:
        spec: The benchmark.
        **kwargs: ``SegmentationFolder`` arguments.
    """

    def __init__(self, *, spec: BenchmarkSpec, **kwargs) -> None:
        self.spec = spec
        super().__init__(**kwargs)

    def original_mask(self, i: int):
        if self.spec.binary_masks:
            for m in self.pairs[i].masks:
                values = np.unique(read_mask_raw(m))
                if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
                    raise ValueError(
                        f"mask {m} holds unexpected values {values[:8].tolist()}: "
                        f"{self.spec.title} masks must be binary (0 = background, 255 or 1 = lesion)"
                    )
        return super().original_mask(i)


def _register() -> None:
    known = set(list_datasets())
    for key, spec in BENCHMARKS.items():
        if key in known:
            continue
        builder = functools.partial(build_benchmark, key)
        builder.__doc__ = f"{spec.title} benchmark in the U-KAN layout (see kanzoo.data.benchmarks)"
        register_dataset(key, f"{spec.title} (U-KAN layout under $KANZOO_DATA or ./inputs)")(builder)


_register()
