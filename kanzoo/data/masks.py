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
    out = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"{name}: {bad} pixel value(s) are NaN or infinite; images must hold finite values")
    return out


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


def _ignore_pixels(raw: np.ndarray, ignore_value: Any, name: str) -> np.ndarray:
    """Boolean map of the pixels whose stored value is ``ignore_value`` (a value or a colour)."""
    key = _parse_color(ignore_value)
    if isinstance(key, tuple):
        if raw.ndim != 3 or raw.shape[-1] < len(key):
            raise ValueError(
                f"{name}: ignore_value {ignore_value!r} is a colour but the mask is single-channel"
            )
        return (raw[..., : len(key)] == np.asarray(key, dtype=raw.dtype)).all(-1)
    if raw.ndim == 3:
        return (raw == key).all(-1)
    return raw == key


def _is_ignore_class(v: Any) -> bool:
    return (isinstance(v, str) and v.strip().lower() == "ignore") or (
        not isinstance(v, (str, bool)) and int(v) == IGNORE_INDEX
    )


def to_label_map(
    raw: np.ndarray,
    *,
    mode: str = "binary",
    threshold: float | None = None,
    value_map: Mapping[Any, int | str] | None = None,
    num_classes: int | None = None,
    ignore_value: Any = None,
    name: str = "mask",
) -> np.ndarray:
    """Stored mask values -> int64 class ids ``[H, W]`` (``IGNORE_INDEX`` = 255 for ignored pixels).

    Args:
        raw: ``[H, W]`` or ``[H, W, C]`` mask values.
        mode: ``"binary"``: foreground = value > threshold (colour masks use their maximum over
            channels). ``"multiclass"``: values are class ids, or are translated by ``value_map``.
        threshold: Binary threshold; ``None`` = automatic: ``> 127`` for 8-bit masks that reach
            128 or more (0/255 masks; robust to JPEG noise), else ``> 0`` (0/1 masks, label and
            16-bit instance masks). Ignored pixels do not take part in the automatic choice, so a
            0/1 mask with 255 for "ignore" keeps its 0/1 meaning.
        value_map: ``{stored value: class id}``; keys may be ints or colours (``(r, g, b)`` or
            ``"r,g,b"``); a class id of ``"ignore"`` or 255 marks ignored pixels. Every stored value
            must be listed.
        num_classes: Class ids must lie in ``[0, num_classes)`` in multiclass mode.
        ignore_value: Stored value (or colour) of pixels that no loss or metric counts; they get
            label ``IGNORE_INDEX`` (255). None: no pixel is ignored.
        name: What to call the mask in error messages (its file name).

    Raises:
        ValueError: unknown mode, a value outside ``value_map`` or a class id out of range.
    """
    ignored = None if ignore_value is None else _ignore_pixels(raw, ignore_value, name)
    if ignored is not None and not ignored.any():
        ignored = None
    if mode == "binary":
        gray = raw.max(axis=-1) if raw.ndim == 3 else raw
        if threshold is None:
            kept = gray if ignored is None else gray[~ignored]
            threshold = 127 if gray.dtype == np.uint8 and kept.size and kept.max() >= 128 else 0
        labels = (gray > threshold).astype(np.int64)
        if ignored is not None:
            labels[ignored] = IGNORE_INDEX
        return labels
    if mode != "multiclass":
        raise ValueError(f"mask_mode must be 'binary' or 'multiclass', got {mode!r}")
    if value_map:
        parsed = {
            _parse_color(k): IGNORE_INDEX if _is_ignore_class(v) else int(v) for k, v in value_map.items()
        }
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
        valid_codes = uniq if ignored is None else np.unique(codes[~ignored.reshape(-1)])
        missing = [int(u) for u in valid_codes if int(u) not in table]
        if missing:
            shown = [(u >> 16, (u >> 8) & 255, u & 255) if colour else u for u in missing[:8]]
            raise ValueError(f"{name}: mask values {shown} are not in value_map {dict(value_map)}")
        lut = np.array([table.get(int(u), IGNORE_INDEX) for u in uniq], dtype=np.int64)
        labels = lut[inverse].reshape(raw.shape[:2])
    else:
        if raw.ndim == 3:
            if not (raw == raw[..., :1]).all():
                raise ValueError(
                    f"{name}: colour mask in multiclass mode needs value_map with (r, g, b) keys"
                )
            raw = raw[..., 0]
        labels = raw.astype(np.int64)
    if ignored is not None:
        labels[ignored] = IGNORE_INDEX
    if num_classes is not None and labels.size:
        valid = labels[labels != IGNORE_INDEX] if (ignored is not None or value_map) else labels
        if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
            bad = sorted({int(v) for v in np.unique(valid) if not 0 <= v < num_classes})
            hint = "pass value_map=... or ignore_value=..." if IGNORE_INDEX in bad else "pass value_map=..."
            raise ValueError(
                f"{name}: unexpected mask values {bad[:8]} for num_classes={num_classes} ({hint})"
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
