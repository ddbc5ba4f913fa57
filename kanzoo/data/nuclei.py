"""Real fluorescence nuclei (DSB-2018) tiles from one image + instance mask shipped with kanzoo.

``kanzoo/data/assets/nuclei_dsb2018.npz`` (207 KB) holds a 512x512 image of stained nuclei from the
2018 Data Science Bowl (BBBC038v1) and its instance labels: the pixel values of the sample TIFFs
that the ``stardist`` package ships (provenance, checksums and license in
``kanzoo/data/assets/NUCLEI_LICENSE.md``). It is read with numpy (no pickle). The instance mask
becomes binary (nucleus vs background), the image is normalized by its 1st/99.8th percentiles (as
is usual for fluorescence), and both are cut into a grid of non-overlapping tiles. Tiles are split
between train and val by a seeded permutation, so no pixel is in two splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DataModule, as_size, normalize, register_dataset
from .masks import augment_pair, resize_pair

SAMPLE = Path(__file__).resolve().parent / "assets" / "nuclei_dsb2018.npz"


def load_nuclei_arrays(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 [H, W] in [0, 1], instance labels int64 [H, W])``.

    Args:
        data_dir: Folder holding ``img2d.tif`` and ``mask2d.tif`` (read with ``tifffile``); default:
            the sample shipped with kanzoo.
    """
    if data_dir is None:
        with np.load(SAMPLE, allow_pickle=False) as arrays:
            raw, inst = arrays["image"], arrays["mask"].astype(np.int64)
        source = f"{SAMPLE}"
    else:
        import tifffile

        root = Path(data_dir)
        img_path, mask_path = root / "img2d.tif", root / "mask2d.tif"
        for p in (img_path, mask_path):
            if not p.is_file():
                raise FileNotFoundError(f"nuclei data file not found: {p}")
        raw, inst = tifffile.imread(img_path), tifffile.imread(mask_path).astype(np.int64)
        source = f"{img_path} and {mask_path}"
    if raw.shape != inst.shape or raw.ndim != 2:
        raise ValueError(
            f"nuclei image and mask must be 2-D of one size, got {raw.shape} and {inst.shape} ({source})"
        )
    img = raw.astype(np.float32)
    # Python floats: NumPy 2 promotes a float32 array combined with float64 *scalars* to float64.
    lo, hi = (float(v) for v in np.percentile(img, [1.0, 99.8]))
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    return img, inst


class TileDataset(Dataset):
    """Tiles of one image/label pair.

    Args:
        image: ``[C, H, W]`` float tensor (unnormalized).
        mask: ``[H, W]`` int64 label map.
        origins: Top-left corners ``(row, col)`` of the tiles.
        tile_size: Tile side length.
        image_size: Output size (tiles are resized when it differs).
        mean: Normalization mean per channel.
        std: Normalization std per channel.
        augment: Random flips / 90° rotations.
        prefix: Id prefix.
    """

    def __init__(
        self,
        *,
        image: torch.Tensor,
        mask: torch.Tensor,
        origins: list[tuple[int, int]],
        tile_size: int,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool = False,
        prefix: str = "nuclei",
    ) -> None:
        self.image, self.mask, self.origins = image, mask, origins
        self.tile_size, self.size = tile_size, as_size(image_size)
        self.mean, self.std, self.augment, self.prefix = mean, std, augment, prefix
        self.ids = [f"{prefix}_r{r:04d}_c{c:04d}" for r, c in origins]

    def __len__(self) -> int:
        return len(self.origins)

    def original_image(self, i: int) -> torch.Tensor:
        r, c = self.origins[i]
        return self.image[:, r : r + self.tile_size, c : c + self.tile_size].clone()

    def original_mask(self, i: int) -> torch.Tensor:
        r, c = self.origins[i]
        return self.mask[r : r + self.tile_size, c : c + self.tile_size].clone()

    def __getitem__(self, i: int) -> dict:
        image, mask = resize_pair(self.original_image(i), self.original_mask(i), self.size)
        if self.augment:
            image, mask = augment_pair(image, mask)
        return {
            "pixel_values": normalize(image, self.mean, self.std),
            "mask": mask,
            "id": self.ids[i],
            "orig_size": torch.tensor([self.tile_size, self.tile_size]),
        }


@register_dataset("nuclei", "Real DSB-2018 nuclei tiles (binary) from the image shipped with kanzoo")
def build_nuclei(
    *,
    tile_size: int = 64,
    image_size: int | None = None,
    in_chans: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
    augment: bool = True,
    data_dir: str | None = None,
) -> DataModule:
    """Binary nuclei segmentation tiles (embedded; offline).

    With the default 64-pixel tiles the 512x512 image gives 64 tiles: 51 train, 13 val.

    Args:
        tile_size: Tile side; partial tiles at the right/bottom edge are dropped.
        image_size: Output size (default: ``tile_size``).
        in_chans: 1, or 3 (the gray channel repeated).
        val_fraction: Fraction of tiles used as val.
        seed: Split seed (a permutation of the tile grid).
        augment: Random flips / 90° rotations on train tiles.
        data_dir: Folder with ``img2d.tif``/``mask2d.tif`` (default: the sample shipped with kanzoo).
    """
    img, inst = load_nuclei_arrays(data_dir)
    h, w = img.shape
    if not 8 <= tile_size <= min(h, w):
        raise ValueError(f"tile_size must be in [8, {min(h, w)}], got {tile_size}")
    origins = [
        (r, c) for r in range(0, h - tile_size + 1, tile_size) for c in range(0, w - tile_size + 1, tile_size)
    ]
    n_val = max(1, int(round(val_fraction * len(origins))))
    if not 0 < n_val < len(origins):
        raise ValueError(f"val_fraction={val_fraction} leaves no train or no val tiles of {len(origins)}")
    perm = np.random.default_rng(seed).permutation(len(origins))
    val_o = sorted(origins[j] for j in perm[:n_val])
    train_o = sorted(origins[j] for j in perm[n_val:])
    image = torch.from_numpy(img)[None].expand(in_chans, -1, -1).contiguous()
    mask = torch.from_numpy((inst > 0).astype(np.int64))
    train_pix = torch.stack([image[:, r : r + tile_size, c : c + tile_size] for r, c in train_o])
    mean = (float(train_pix.mean()),) * in_chans
    std = (float(train_pix.std()),) * in_chans
    kw = {"image": image, "mask": mask, "tile_size": tile_size, "image_size": image_size or tile_size}
    kw.update(mean=mean, std=std)
    return DataModule(
        task="segmentation",
        train=TileDataset(origins=train_o, augment=augment, **kw),
        val=TileDataset(origins=val_o, **kw),
        info={
            "num_classes": 2,
            "in_chans": in_chans,
            "image_size": image_size or tile_size,
            "mean": mean,
            "std": std,
            "class_names": ["background", "nucleus"],
            "source": str(data_dir) if data_dir is not None else "DSB-2018 (BBBC038v1) sample in kanzoo",
        },
    )
