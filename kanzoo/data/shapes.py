"""Procedural segmentation data: textured circles, rectangles and triangles on noisy backgrounds.

Every image is a pure function of ``(seed, split, index)``, so any count and any size is
available without storage, workers and processes agree, and the data never changes between runs.
Classes: 0 background; binary variant 1 = any shape; multi-class variant 1 = circle,
2 = rectangle, 3 = triangle (later shapes occlude earlier ones, in the image and in the mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DataModule, check_int, normalize, register_dataset

SHAPE_CLASSES = ("background", "circle", "rectangle", "triangle")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def render_shapes(
    rng: np.random.Generator,
    *,
    size: int,
    in_chans: int = 3,
    min_shapes: int = 1,
    max_shapes: int = 4,
    noise: float = 0.08,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one sample.

    Args:
        rng: Random generator (all randomness comes from it).
        size: Side length in pixels.
        in_chans: Image channels.
        min_shapes: Minimum number of shapes.
        max_shapes: Maximum number of shapes.
        noise: Std of the additive Gaussian pixel noise.

    Returns:
        ``image`` float32 ``[C, size, size]`` in [0, 1] and ``mask`` int64 ``[size, size]`` with
        values in {0, 1, 2, 3} (shape kind per pixel).
    """
    yy, xx = np.meshgrid(np.linspace(0.0, 1.0, size), np.linspace(0.0, 1.0, size), indexing="ij")
    # Background: a random linear gradient plus a faint oriented wave texture, per channel.
    base = rng.uniform(0.2, 0.8, size=(in_chans, 1, 1))
    grad = rng.uniform(-0.2, 0.2, size=(in_chans, 2, 1, 1))
    theta, freq = rng.uniform(0, np.pi), rng.uniform(4, 12)
    wave = 0.06 * np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)))
    img = base + grad[:, 0] * (xx - 0.5) + grad[:, 1] * (yy - 0.5) + wave
    mask = np.zeros((size, size), dtype=np.int64)
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        kind = int(rng.integers(1, 4))
        cx, cy = rng.uniform(0.15, 0.85, size=2)
        r = rng.uniform(0.08, 0.22)
        if kind == 1:
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        elif kind == 2:
            a = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
            v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
            half_w, half_h = r * rng.uniform(0.6, 1.2), r * rng.uniform(0.6, 1.2)
            inside = (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
        else:
            start = rng.uniform(0, 2 * np.pi)
            angles = start + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, size=3)
            px, py = cx + 1.2 * r * np.cos(angles), cy + 1.2 * r * np.sin(angles)
            # Inside a triangle = same side of all three edges (signs of the edge cross products agree).
            s = [
                (px[(j + 1) % 3] - px[j]) * (yy - py[j]) - (py[(j + 1) % 3] - py[j]) * (xx - px[j])
                for j in range(3)
            ]
            inside = ((s[0] >= 0) & (s[1] >= 0) & (s[2] >= 0)) | ((s[0] <= 0) & (s[1] <= 0) & (s[2] <= 0))
        # Shape colour: clearly brighter or darker than the background on average, with its own texture.
        sign = rng.choice([-1.0, 1.0], size=(in_chans, 1, 1))
        color = np.clip(base + sign * rng.uniform(0.2, 0.45, size=(in_chans, 1, 1)), 0.0, 1.0)
        t_a, t_f = rng.uniform(0, np.pi), rng.uniform(6, 20)
        texture = 0.05 * np.sin(2 * np.pi * t_f * (xx * np.cos(t_a) + yy * np.sin(t_a)))
        img = np.where(inside[None], color + texture, img)
        mask[inside] = kind
    img = img + rng.normal(0.0, noise, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask


class ShapesDataset(Dataset):
    """Seeded procedural shapes; item ``i`` is generated on access (about 0.1 ms at 64x64).

    Args:
        num_samples: Number of items.
        image_size: Side length.
        in_chans: Image channels.
        multiclass: Label shapes by kind (4 classes) instead of foreground/background.
        seed: Base seed.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent random streams).
        mean: Per-channel normalization mean.
        std: Per-channel normalization std.
        min_shapes: Minimum shapes per image.
        max_shapes: Maximum shapes per image.
        noise: Pixel noise std.
    """

    def __init__(
        self,
        *,
        num_samples: int,
        image_size: int = 64,
        in_chans: int = 3,
        multiclass: bool = False,
        seed: int = 0,
        split: str = "train",
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        min_shapes: int = 1,
        max_shapes: int = 4,
        noise: float = 0.08,
    ) -> None:
        if split not in _SPLIT_CODE:
            raise ValueError(f"split must be one of {list(_SPLIT_CODE)}, got {split!r}")
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
        if num_samples < 0 or image_size < 4:
            raise ValueError(f"need num_samples >= 0 and image_size >= 4, got {num_samples}, {image_size}")
        self.num_samples, self.image_size, self.in_chans = int(num_samples), int(image_size), int(in_chans)
        self.multiclass, self.seed, self.split = multiclass, int(seed), split
        self.mean = tuple(mean) * (in_chans if len(mean) == 1 else 1)
        self.std = tuple(std) * (in_chans if len(std) == 1 else 1)
        self.render_kw = {"min_shapes": min_shapes, "max_shapes": max_shapes, "noise": noise}

    def __len__(self) -> int:
        return self.num_samples

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalized image in [0, 1] and the shape-kind mask of item ``i``."""
        if not 0 <= i < self.num_samples:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], int(i)])
        return render_shapes(rng, size=self.image_size, in_chans=self.in_chans, **self.render_kw)

    def __getitem__(self, i: int) -> dict:
        img, mask = self.raw(int(i))
        if not self.multiclass:
            mask = (mask > 0).astype(np.int64)
        x = normalize(torch.from_numpy(img), self.mean, self.std)
        return {
            "pixel_values": x,
            "mask": torch.from_numpy(mask),
            "id": f"shapes_{self.split}_{int(i):06d}",
            "orig_size": torch.tensor([self.image_size, self.image_size]),
        }


@register_dataset(
    "shapes", "Procedural textured shapes for segmentation (binary or 4-class), any size/count", embedded=True
)
def build_shapes(
    *,
    image_size: int = 64,
    in_chans: int = 3,
    multiclass: bool = False,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int = 200,
    seed: int = 0,
    min_shapes: int = 1,
    max_shapes: int = 4,
    noise: float = 0.08,
) -> DataModule:
    """Procedural segmentation data (embedded; offline; nothing stored on disk).

    Normalization constants are the per-channel mean/std of the first 64 training images.

    Args:
        image_size: Side length.
        in_chans: Image channels.
        multiclass: 4 classes (background/circle/rectangle/triangle) instead of 2.
        num_train: Training images.
        num_val: Validation images.
        num_test: Test images (0 for none).
        seed: Base seed; splits use independent streams derived from it.
        min_shapes: Minimum shapes per image.
        max_shapes: Maximum shapes per image.
        noise: Pixel noise std.
    """
    check_int("image_size", image_size, minimum=8, maximum=4096)
    check_int("in_chans", in_chans, minimum=1, maximum=4)
    check_int("num_train", num_train, minimum=1)
    check_int("num_val", num_val, minimum=1)
    check_int("num_test", num_test, minimum=0)
    check_int("min_shapes", min_shapes, minimum=0)
    check_int("max_shapes", max_shapes, minimum=max(min_shapes, 1))
    if not 0.0 <= float(noise) <= 10.0:
        raise ValueError(f"noise must be in [0, 10], got {noise}")
    kw = {
        "image_size": image_size,
        "in_chans": in_chans,
        "multiclass": multiclass,
        "seed": seed,
        "min_shapes": min_shapes,
        "max_shapes": max_shapes,
        "noise": noise,
    }
    probe = ShapesDataset(num_samples=min(64, max(num_train, 1)), split="train", **kw)
    stack = np.stack([probe.raw(i)[0] for i in range(len(probe))])
    mean = tuple(float(v) for v in stack.mean(axis=(0, 2, 3)))
    std = tuple(float(v) for v in stack.std(axis=(0, 2, 3)))
    kw.update(mean=mean, std=std)
    return DataModule(
        task="segmentation",
        train=ShapesDataset(num_samples=num_train, split="train", **kw),
        val=ShapesDataset(num_samples=num_val, split="val", **kw),
        test=ShapesDataset(num_samples=num_test, split="test", **kw) if num_test > 0 else None,
        info={
            "num_classes": 4 if multiclass else 2,
            "in_chans": in_chans,
            "image_size": image_size,
            "mean": mean,
            "std": std,
            "class_names": list(SHAPE_CLASSES) if multiclass else ["background", "shape"],
            "source": "procedural shapes",
        },
    )
