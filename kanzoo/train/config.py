"""Plain dataclass settings for the trainer (no Hydra: the entry point turns YAML into these)."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any


def _from_dict(cls, values: dict[str, Any] | None, what: str):
    """Build dataclass ``cls`` from ``values``; unknown keys raise one clear ValueError."""
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown {what} setting(s): {', '.join(hints)}; known: {', '.join(names)}")
    return cls(**values)


@dataclass
class OptimConfig:
    """AdamW settings; parameter groups follow the parameters' roles (``kanzoo.train.optim``).

    The default recipe treats a KAN model and its MLP/CNN twin alike: every weight matrix (an
    ``nn.Linear``/``nn.ConvNd`` weight, a KAN layer's ``base_weight`` and ``spline_weight``) is
    decayed with ``weight_decay``; biases, gains (norm weights, a KAN layer's ``spline_scaler``),
    basis coefficients (GR-KAN's rational numerator/denominator) and, unless
    ``decay_embeddings``, embeddings are not. The ``kan_*`` options are explicit KAN-specific
    exceptions, off by default.

    Args:
        name: Optimizer name; only ``"adamw"`` is implemented.
        lr: Peak learning rate (after warmup).
        weight_decay: Decoupled weight decay of the weight matrices (KAN and non-KAN alike).
        betas: Adam betas.
        eps: Adam epsilon.
        kan_lr_mult: Learning-rate multiplier for every parameter of a KAN layer (its weights,
            scaler, bias and basis coefficients). 1 (the default) trains them like the twin's.
        kan_weight_decay: Weight decay of the KAN layers' weight tensors (``base_weight``,
            ``spline_weight``) instead of ``weight_decay``; e.g. 0 keeps the spline
            coefficients from being shrunk. ``None`` (the default): same as ``weight_decay``.
        decay_embeddings: Whether embeddings (``nn.Embedding`` tables, position embeddings and
            class tokens) get weight decay.
        fused: Use the fused CUDA AdamW kernel when all parameters are on a CUDA device.
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    kan_lr_mult: float = 1.0
    kan_weight_decay: float | None = None
    decay_embeddings: bool = False
    fused: bool = True

    def __post_init__(self) -> None:
        if self.name.lower() != "adamw":
            raise ValueError(f"unknown optimizer {self.name!r}; available: 'adamw'")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.kan_lr_mult <= 0:
            raise ValueError(f"optim.kan_lr_mult must be > 0, got {self.kan_lr_mult}")
        if not self.weight_decay >= 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.kan_weight_decay is not None and not self.kan_weight_decay >= 0:
            raise ValueError(f"optim.kan_weight_decay must be >= 0 or null, got {self.kan_weight_decay}")
        self.betas = tuple(float(b) for b in self.betas)  # lists from YAML

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> OptimConfig:
        """Build from a plain dict (e.g. a resolved YAML group), rejecting unknown keys."""
        return _from_dict(cls, values, "optim")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup, then cosine / linear decay or constant.

    Args:
        name: ``"cosine"``, ``"linear"`` or ``"constant"``.
        warmup_steps: Warmup length in optimizer steps; when None, ``warmup_ratio`` of the run.
        warmup_ratio: Fraction of ``max_steps`` used for warmup when ``warmup_steps`` is None.
        min_lr_ratio: Final learning rate as a fraction of the peak (cosine/linear).
    """

    name: str = "cosine"
    warmup_steps: int | None = None
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown schedule {self.name!r}; available: 'cosine', 'linear', 'constant'")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"schedule.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ScheduleConfig:
        """Build from a plain dict, rejecting unknown keys."""
        return _from_dict(cls, values, "schedule")


@dataclass
class TrainerConfig:
    """Everything about how a run is executed (not what is trained).

    Args:
        run_dir: Output directory (metrics, checkpoints, ``final/``).
        max_steps: Number of optimizer steps.
        batch_size: Micro-batch size per process.
        grad_accum_steps: Micro-batches per optimizer step; the global batch is
            ``batch_size * grad_accum_steps * num_processes``.
        eval_batch_size: Batch size for evaluation (defaults to ``batch_size``).
        device: ``"auto"`` (GPU when available), ``"cpu"`` or ``"gpu"``.
        mixed_precision: ``"auto"`` (bf16 on GPUs supporting it, else fp16 on GPU, ``"no"`` on
            CPU), ``"no"``, ``"bf16"`` or ``"fp16"``.
        seed: Seed for weights, data order and dropout.
        clip_grad_norm: Max global gradient norm; None or 0 disables clipping.
        log_every: Steps between logged training metrics.
        eval_every: Steps between evaluations (0: only at the end).
        eval_max_batches: Cap on evaluation batches per process (None: whole validation set).
        checkpoint_every: Steps between resumable checkpoints (0: none).
        keep_checkpoints: Number of newest resumable checkpoints kept.
        save_pretrained_in_checkpoints: Also write a ``from_pretrained`` copy of the model
            (``model/``) into each periodic checkpoint.
        save_best: Keep ``<run_dir>/best`` (from_pretrained format) at the best eval metric.
        resume: None (fresh run; refuses a run_dir that already holds checkpoints), ``"auto"``
            (newest complete checkpoint in ``run_dir`` if any) or a checkpoint directory path.
        grid_update_every: Steps between B-spline grid updates (0: off).
        grid_update_until: Last step at which grids are updated (None: ``max_steps // 2``).
        grid_update_samples: Max rows of layer inputs used per grid update.
        num_workers: DataLoader worker processes.
        num_threads: CPU threads for torch ops (None: torch's default). On a busy shared CPU a
            single thread per process can be many times faster than oversubscribed threads.
        compile: Wrap the model in ``torch.compile``.
        progress: Show a tqdm progress bar on the main process.
        detect_nonfinite: Stop with a clear error when the loss becomes NaN/inf.
    """

    run_dir: str = "runs/default"
    max_steps: int = 1000
    batch_size: int = 32
    grad_accum_steps: int = 1
    eval_batch_size: int | None = None
    device: str = "auto"
    mixed_precision: str = "auto"
    seed: int = 0
    clip_grad_norm: float | None = 1.0
    log_every: int = 10
    eval_every: int = 0
    eval_max_batches: int | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    save_pretrained_in_checkpoints: bool = True
    save_best: bool = False
    resume: str | None = None
    grid_update_every: int = 0
    grid_update_until: int | None = None
    grid_update_samples: int = 2048
    num_workers: int = 0
    num_threads: int | None = None
    compile: bool = False
    progress: bool = True
    detect_nonfinite: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("log_every", "eval_every", "checkpoint_every", "grid_update_every", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"trainer.{name} must be >= 0, got {getattr(self, name)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"trainer.num_threads must be >= 1 or null, got {self.num_threads}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"trainer.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.device not in ("auto", "cpu", "gpu", "cuda"):
            raise ValueError(f"trainer.device must be 'auto', 'cpu' or 'gpu', got {self.device!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(
                "trainer.mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', "
                f"got {self.mixed_precision!r}"
            )
        if self.resume in ("", "none", "null", "None"):
            self.resume = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainerConfig:
        """Build from a plain dict, rejecting unknown keys."""
        return _from_dict(cls, values, "trainer")
