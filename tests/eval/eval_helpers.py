"""Shared test helpers for the evaluation tests (data folders generated on the fly)."""

import numpy as np
from PIL import Image


def make_ukan_folder(parent, name="busi", n=10, mask_suffix="_mask.png", seed=0):
    """Images of varying sizes with a bright square lesion; masks 0/255 in masks/0."""
    root = parent / name
    (root / "images").mkdir(parents=True)
    (root / "masks" / "0").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    masks = {}
    for i in range(n):
        h, w = 40 + 4 * i, 56
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        m = np.zeros((h, w), np.uint8)
        y, x = rng.integers(2, h - 14), rng.integers(2, w - 14)
        m[y : y + 12, x : x + 12] = 255
        img[m > 0] += 150
        ident = f"case ({i})"
        Image.fromarray(img).save(root / "images" / f"{ident}.png")
        Image.fromarray(m).save(root / "masks" / "0" / f"{ident}{mask_suffix}")
        masks[ident] = (m > 127).astype(np.int64)
    return root, masks
