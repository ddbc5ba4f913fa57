"""Typed, range-checked settings of ``evaluate.py`` / :func:`kanzoo.eval.evaluate` (no Hydra here).

Every value is checked when the config is built, before any model or data is loaded, and a bad one
raises a :class:`~kanzoo._cli.UserInputError` naming the setting, the value and what is expected
(``batch_size=abc``, ``max_samples=-1``, ``threshold=2``, ``device=cuda`` without a GPU, a typo in a
key, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from kanzoo._cli import UserInputError

__all__ = ["EvalConfig", "check_device"]

SPLITS = ("val", "test", "train")
PROTOCOLS = ("per_image", "ukan")
RESOLUTIONS = ("original", "train")
HD95_CONVENTIONS = ("pooled", "max")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def _int(name: str, value: Any, *, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise UserInputError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise UserInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
        value = int(value)
    if value < minimum:
        raise UserInputError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UserInputError(f"{name} must be true or false, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}")
    return value


def _optional_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)) or (isinstance(value, str) and not value.strip()):
        raise UserInputError(f"{name} must be a path or name, got {value!r}")
    return str(value)


def check_device(device: str) -> str:
    """``device`` if it names a device this machine has (``auto`` picks CUDA when present).

    Raises:
        UserInputError: an unknown device string, or a CUDA/MPS device that is not available.
    """
    import torch

    if not isinstance(device, str) or not _DEVICE.match(device):
        raise UserInputError(f"device must be auto, cpu, cuda, cuda:<index> or mps, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device={device} but no CUDA GPU is visible; use device=cpu or device=auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserInputError(
                f"device={device} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserInputError("device=mps but MPS is not available; use device=cpu or device=auto")
    return device


@dataclass
class EvalConfig:
    """Settings of one evaluation (``configs/eval.yaml``; the data config is passed separately).

    Args:
        checkpoint: Checkpoint directory, shipped name or hub id.
        compare: A second checkpoint evaluated on the same data and reported beside the first.
        split: ``val``, ``test`` or ``train``.
        output_dir: Where ``metrics.json``, ``report.md`` and pictures go (default
            ``runs/eval/<checkpoint>_<data>_<split>``); must not be an existing file.
        protocol: ``per_image`` or ``ukan`` (U-KAN paper: its split, training resolution,
            batch-pooled IoU; binary segmentation benchmarks only).
        threshold: Sigmoid probability threshold of binary segmentation models, in (0, 1).
        resolution: ``original`` (predictions resized back to each image's original size when the
            data provides it) or ``train`` (the model's input size).
        batch_size: Images or blocks per forward pass (>= 1).
        num_overlays: Segmentation overlay pictures per checkpoint (>= 0).
        overlay_max_side: Overlays are drawn with their longer side at most this many pixels
            (>= 16): scores use every pixel, pictures need not.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``.
        hd95_convention: ``pooled`` (medpy) or ``max`` (MONAI).
        compute_hd95: Compute HD95 (the slowest segmentation metric).
        max_samples: Evaluate only the first N samples (>= 1; None: all).
        progress: Show a progress bar.
    """

    checkpoint: str | None = None
    compare: str | None = None
    split: str = "val"
    output_dir: str | None = None
    protocol: str = "per_image"
    threshold: float = 0.5
    resolution: str = "original"
    batch_size: int = 8
    num_overlays: int = 4
    overlay_max_side: int = 1024
    device: str = "auto"
    hd95_convention: str = "pooled"
    compute_hd95: bool = True
    max_samples: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            self.checkpoint = _optional_str("checkpoint", self.checkpoint)
        self.compare = _optional_str("compare", self.compare)
        self.output_dir = _optional_str("output_dir", self.output_dir)
        self.split = _choice("split", self.split, SPLITS)
        self.protocol = _choice("protocol", self.protocol, PROTOCOLS)
        self.resolution = _choice("resolution", self.resolution, RESOLUTIONS)
        self.hd95_convention = _choice("hd95_convention", self.hd95_convention, HD95_CONVENTIONS)
        try:
            threshold = float(self.threshold) if not isinstance(self.threshold, bool) else None
        except (TypeError, ValueError):
            threshold = None
        if threshold is None or not 0.0 < threshold < 1.0:
            raise UserInputError(f"threshold must be a number in (0, 1), got {self.threshold!r}")
        self.threshold = threshold
        self.batch_size = _int("batch_size", self.batch_size, minimum=1)
        self.num_overlays = _int("num_overlays", self.num_overlays, minimum=0)
        self.overlay_max_side = _int("overlay_max_side", self.overlay_max_side, minimum=16)
        self.max_samples = _int("max_samples", self.max_samples, minimum=1, allow_none=True)
        self.compute_hd95 = _bool("compute_hd95", self.compute_hd95)
        self.progress = _bool("progress", self.progress)
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise UserInputError(f"device must be auto, cpu, cuda, cuda:<index> or mps, got {self.device!r}")
        if self.protocol == "ukan":
            # U-KAN's protocol fixes these; a different explicit value would be silently ignored
            self.resolution, self.threshold = "train", 0.5

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> EvalConfig:
        """Build from a plain dict (the resolved YAML minus ``data``), rejecting unknown keys."""
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UserInputError(f"unknown evaluate setting {key!r}{hint}; known: {', '.join(names)}")
        return cls(**values)
