"""Reading images and masks, turning masks into label maps, resizing and joint augmentation.

Shared by the folder, Hugging Face and embedded segmentation sources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: Label of pixels that no loss or metric counts ("ignore"). A folder's ``ignore_value`` (the
#: stored value that marks such pixels) is mapped to it; class ids therefore stay below 255.
IGNORE_INDEX = 255


def _open_pil(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
        return im
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"unreadable image file {path}: {e}") from None


def image_to_array(im: Any, *, in_chans: int, name: str = "image") -> np.ndarray:
    """A PIL image (or array) as float32 ``[C, H, W]`` in [0, 1].

    8-bit images are divided by 255, 16-bit by 65535, 32-bit integer images by their maximum;
    float images are used as they are. Gray images are repeated to 3 channels when asked, colour
    images are reduced to luminance for ``in_chans=1``; an alpha channel is dropped.
    """
    from PIL import Image

    if isinstance(im, Image.Image):
        if im.mode in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "PA"):
            arr = np.asarray(im.convert("L" if in_chans == 1 else "RGB"), dtype=np.float32) / 255.0
        else:
            arr = _scale_array(np.asarray(im))
    else:
        arr = _scale_array(np.asarray(im))
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a 2-D image with optional channels, got shape {arr.shape}")
    if arr.shape[-1] == 4 or arr.shape[-1] == 2:  # drop alpha
        arr = arr[..., :-1]
    c = arr.shape[-1]
    if c != in_chans:
        if c == 1:
            arr = np.repeat(arr, in_chans, axis=-1)
        elif c == 3 and in_chans == 1:
            arr = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        else:
            raise ValueError(f"{name}: has {c} channels, cannot make {in_chans}")
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def _scale_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        top = float(arr.max()) if arr.size else 1.0
        return arr.astype(np.float32) / (top if top > 0 else 1.0)
    return arr.astype(np.float32)


def read_image(path: Path, *, in_chans: int) -> np.ndarray:
    """Image file -> float32 ``[C, H, W]`` in [0, 1]; unreadable files raise ``ValueError`` naming them."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            return image_to_array(tifffile.imread(path), in_chans=in_chans, name=str(path))
        except ValueError:
            raise
        except Exception:  # not a plain TIFF for tifffile: let PIL try
            pass
    return image_to_array(_open_pil(path), in_chans=in_chans, name=str(path))


def read_mask_raw(path: Path) -> np.ndarray:
    """Mask file -> its stored values: ``[H, W]`` (gray/palette/16-bit) or ``[H, W, 3]`` (colour)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            return np.asarray(tifffile.imread(path))
        except Exception:  # fall back to PIL
            pass
    im = _open_pil(path)
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode == "CMYK" or im.mode == "YCbCr":
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels when possible."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                import tifffile

                with tifffile.TiffFile(path) as t:
                    shape = t.pages[0].shape
                    return int(shape[0]), int(shape[1])
            except Exception:
                pass
        raise ValueError(f"unreadable image file {path}: {e}") from None


def _parse_color(key: Any) -> tuple[int, ...] | int:
    if isinstance(key, str):
        parts = [p for p in key.replace("(", "").replace(")", "").replace(" ", "").split(",") if p]
        vals = tuple(int(p) for p in parts)
        return vals[0] if len(vals) == 1 else vals
    if isinstance(key, Sequence):
        return tuple(int(v) for v in key)
    return int(key)


def to_label_map(
    raw: np.ndarray,
    *,
    mode: str = "binary",
    threshold: float | None = None,
    value_map: Mapping[Any, int] | None = None,
    num_classes: int | None = None,
    name: str = "mask",
) -> np.ndarray:
    """Stored mask values -> int64 class ids ``[H, W]``.

    Args:
        raw: ``[H, W]`` or ``[H, W, C]`` mask values.
        mode: ``"binary"``: foreground = value > threshold (colour masks use their maximum over
            channels). ``"multiclass"``: values are class ids, or are translated by ``value_map``.
        threshold: Binary threshold; ``None`` = automatic: ``> 127`` for 8-bit masks that reach
            128 or more (0/255 masks; robust to JPEG noise), else ``> 0`` (0/1 masks, label and
            16-bit instance masks).
        value_map: ``{stored value: class id}``; keys may be ints or colours (``(r, g, b)`` or
            ``"r,g,b"``). Every stored value must be listed.
        num_classes: Class ids must lie in ``[0, num_classes)`` in multiclass mode.
        name: What to call the mask in error messages (its file name).

    Raises:
        ValueError: unknown mode, a value outside ``value_map`` or a class id out of range.
    """
    if mode == "binary":
        gray = raw.max(axis=-1) if raw.ndim == 3 else raw
        if threshold is None:
            threshold = 127 if gray.dtype == np.uint8 and gray.size and gray.max() >= 128 else 0
        return (gray > threshold).astype(np.int64)
    if mode != "multiclass":
        raise ValueError(f"mask_mode must be 'binary' or 'multiclass', got {mode!r}")
    if value_map:
        parsed = {_parse_color(k): int(v) for k, v in value_map.items()}
        colour = any(isinstance(k, tuple) for k in parsed)
        if colour:
            if raw.ndim != 3:
                raise ValueError(f"{name}: value_map has colour keys but the mask is single-channel")
            flat = raw[..., :3].reshape(-1, 3).astype(np.int64)
            codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
            table = {(k[0] << 16) | (k[1] << 8) | k[2]: v for k, v in parsed.items() if isinstance(k, tuple)}
        else:
            if raw.ndim == 3:
                raw = raw[..., 0] if (raw == raw[..., :1]).all() else raw
                if raw.ndim == 3:
                    raise ValueError(f"{name}: colour mask needs a value_map with (r, g, b) keys")
            codes = raw.reshape(-1).astype(np.int64)
            table = dict(parsed)
        uniq, inverse = np.unique(codes, return_inverse=True)
        missing = [int(u) for u in uniq if int(u) not in table]
        if missing:
            shown = [(u >> 16, (u >> 8) & 255, u & 255) if colour else u for u in missing[:8]]
            raise ValueError(f"{name}: mask values {shown} are not in value_map {dict(value_map)}")
        labels = np.array([table[int(u)] for u in uniq], dtype=np.int64)[inverse].reshape(raw.shape[:2])
    else:
        if raw.ndim == 3:
            if not (raw == raw[..., :1]).all():
                raise ValueError(
                    f"{name}: colour mask in multiclass mode needs value_map with (r, g, b) keys"
                )
            raw = raw[..., 0]
        labels = raw.astype(np.int64)
    if num_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = sorted({int(v) for v in np.unique(labels) if not 0 <= v < num_classes})
        raise ValueError(
            f"{name}: unexpected mask values {bad[:8]} for num_classes={num_classes} (pass value_map=...)"
        )
    return labels


def resize_pair(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resizes ``image [C, H, W]`` bilinearly (antialiased) and ``mask [H, W]`` by nearest neighbour."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image, mask


def augment_pair(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal/vertical flips and, for square inputs, a random multiple of 90° rotation,
    applied identically to image and mask (torch's global RNG)."""
    if torch.rand(()) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    if torch.rand(()) < 0.5:
        image, mask = image.flip(-2), mask.flip(-2)
    if image.shape[-1] == image.shape[-2]:
        k = int(torch.randint(0, 4, ()))
        if k:
            image, mask = image.rot90(k, (-2, -1)), mask.rot90(k, (-2, -1))
    return image.contiguous(), mask.contiguous()
