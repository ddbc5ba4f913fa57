"""Plain dataclass settings for the trainer (no Hydra: the entry point turns YAML into these).

Every field is type- and range-checked when the object is built (:func:`check_fields`): a bad
value is one ``ValueError`` line naming the setting (``trainer.batch_size must be an integer >= 1,
got 2.5``), so nothing reaches the training loop that would train silently wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_INT_MAX = 2**63 - 1


class SettingError(ValueError):
    """A setting has the wrong type or is out of range (one line naming it)."""


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, (list, tuple, dict)):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(value: str, options: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {_num(hi)}"
    return ""


def check_value(name: str, value: Any, kind: str, **rule: Any) -> Any:
    """Check and normalise one setting; returns the value converted to ``kind``.

    Args:
        name: Dotted setting name used in the message (``trainer.batch_size``).
        value: The value given.
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"pair"`` (two floats) or ``"strlist"``.
        **rule: ``none`` (None allowed), ``lo``/``hi`` bounds (``lo_open``/``hi_open`` for strict),
            ``choices`` (allowed strings), ``unknown`` (word for a value outside ``choices``, e.g.
            ``"optimizer"``), ``inf`` (float infinity allowed), ``what`` (extra text).

    Raises:
        SettingError: one line naming ``name``, what was expected and what was given.
    """
    if value is None:
        if rule.get("none"):
            return None
    lo, hi = rule.get("lo"), rule.get("hi")
    lo_open, hi_open = rule.get("lo_open", False), rule.get("hi_open", False)
    bounds = _range_text(lo, hi, lo_open, hi_open)
    nullable = " or null" if rule.get("none") else ""

    def fail(expected: str) -> SettingError:
        return SettingError(f"{name} must be {expected}{nullable}, got {_show(value)}{rule.get('what', '')}")

    def in_range(x: float) -> bool:
        return not (
            (lo is not None and (x <= lo if lo_open else x < lo))
            or (hi is not None and (x >= hi if hi_open else x > hi))
        )

    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if kind == "int":
        expected = "an integer" + bounds
        if isinstance(value, bool):
            raise fail(expected)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise fail(expected) from None
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise fail(expected)
            value = int(value)
        if not isinstance(value, int) or not in_range(value) or abs(value) > _INT_MAX:
            raise fail(expected)
        return value
    if kind == "float":
        expected = ("a number" if rule.get("inf") else "a finite number") + bounds
        number = value
        if isinstance(number, str):
            try:
                number = float(number.strip())
            except ValueError:
                raise fail(expected) from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise fail(expected)
        number = float(number)
        if math.isnan(number) or (math.isinf(number) and not rule.get("inf")) or not in_range(number):
            raise fail(expected)
        return number
    if kind == "str":
        choices = rule.get("choices")
        if not isinstance(value, str) or (choices is None and not value.strip()):
            raise fail("one of " + ", ".join(map(repr, choices)) if choices else "a non-empty string")
        if choices is not None and value not in choices:
            if rule.get("unknown"):  # "unknown optimizer 'sgd' (optim.name); available: 'adamw'"
                raise SettingError(
                    f"unknown {rule['unknown']} {_show(value)} ({name}){suggest(value, choices)}; "
                    f"available: {', '.join(map(repr, choices))}"
                )
            raise SettingError(
                f"{name} must be one of {', '.join(map(repr, choices))}{nullable}, got {_show(value)}"
                + suggest(value, choices)
            )
        return value
    if kind == "pair":
        expected = "two numbers" + bounds
        if isinstance(value, (list, tuple)) and len(value) == 2:
            try:
                return tuple(check_value(name, v, "float", **{**rule, "none": False}) for v in value)
            except SettingError:
                pass
        raise fail(expected + ", e.g. [0.9, 0.999]")
    if kind == "strlist":
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise fail("a list of strings")
    raise TypeError(f"unknown setting kind {kind!r}")


def _kind_of(annotation: str) -> tuple[str | None, bool]:
    """Setting kind and nullability from a (string) dataclass annotation."""
    text = str(annotation).replace(" ", "")
    nullable = "None" in text.split("|")
    base = [t for t in text.split("|") if t != "None"]
    base = base[0] if len(base) == 1 else ""
    kinds = {
        "bool": "bool",
        "int": "int",
        "float": "float",
        "str": "str",
        "tuple[float,float]": "pair",
        "list[str]": "strlist",
    }
    return kinds.get(base), nullable


def check_fields(obj: Any, owner: str, rules: Mapping[str, dict[str, Any]]) -> None:
    """Type-check every field of dataclass ``obj`` (from its annotations) with ``rules`` per field.

    A field without a rule still gets its type checked; values are normalised in place (integral
    floats to int, YAML lists to tuples, ...).
    """
    for field in dataclasses.fields(obj):
        kind, nullable = _kind_of(field.type)
        rule = dict(rules.get(field.name, {}))
        kind = rule.pop("kind", kind)
        if kind is None:
            continue
        rule.setdefault("none", nullable)
        setattr(obj, field.name, check_value(f"{owner}.{field.name}", getattr(obj, field.name), kind, **rule))


def _from_dict(cls, values: dict[str, Any] | None, what: str):
    """Build dataclass ``cls`` from ``values``; unknown keys raise one clear ValueError."""
    if values is not None and not isinstance(values, Mapping):
        raise SettingError(f"{what} settings must be a mapping of name: value, got {_show(values)}")
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), names, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SettingError(f"unknown {what} setting(s): {', '.join(hints)}; known: {', '.join(names)}")
    return cls(**values)


#: Ranges of the optimizer settings (any field with "weight_decay"/"lr" in its name is also checked).
OPTIM_RULES: dict[str, dict[str, Any]] = {
    "name": {"choices": ("adamw",), "unknown": "optimizer"},  # what kanzoo.train.optim builds
    "lr": {"lo": 0.0, "lo_open": True},
    "betas": {"lo": 0.0, "hi": 1.0, "hi_open": True},
    "eps": {"lo": 0.0, "lo_open": True},
    "kan_lr_mult": {"lo": 0.0, "lo_open": True},
}


def _optim_rules(obj: Any) -> dict[str, dict[str, Any]]:
    rules = {}
    for field in dataclasses.fields(obj):
        if "weight_decay" in field.name:
            rules[field.name] = {"lo": 0.0}
        elif field.name.endswith("lr") or field.name.endswith("lr_mult"):
            rules[field.name] = {"lo": 0.0, "lo_open": True}
    return {**rules, **OPTIM_RULES}


def check_optim(obj: Any) -> None:
    """Validate an :class:`OptimConfig` (names lower-cased first)."""
    if isinstance(obj.name, str):
        obj.name = obj.name.lower()
    check_fields(obj, "optim", _optim_rules(obj))


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
        check_optim(self)  # types and ranges of every field (one line naming the setting)
        self.betas = tuple(float(b) for b in self.betas)  # lists from YAML

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> OptimConfig:
        """Build from a plain dict (e.g. a resolved YAML group), rejecting unknown keys."""
        return _from_dict(cls, values, "optim")


SCHEDULE_RULES: dict[str, dict[str, Any]] = {
    "name": {"choices": ("cosine", "linear", "constant"), "unknown": "schedule"},
    "warmup_steps": {"lo": 0},
    "warmup_ratio": {"lo": 0.0, "hi": 1.0, "hi_open": True},
    "min_lr_ratio": {"lo": 0.0, "hi": 1.0},
}


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
        check_fields(self, "optim.schedule", SCHEDULE_RULES)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ScheduleConfig:
        """Build from a plain dict, rejecting unknown keys."""
        return _from_dict(cls, values, "schedule")


TRAINER_RULES: dict[str, dict[str, Any]] = {
    "max_steps": {"lo": 1},
    "batch_size": {"lo": 1},
    "grad_accum_steps": {"lo": 1},
    "eval_batch_size": {"lo": 1},
    "device": {"choices": ("auto", "cpu", "gpu", "cuda")},
    "mixed_precision": {"choices": ("auto", "no", "bf16", "fp16")},
    "seed": {"lo": 0, "hi": 2**32 - 1},
    "clip_grad_norm": {"lo": 0.0, "inf": True, "what": " (0 or null: no clipping)"},
    "log_every": {"lo": 1},
    "eval_every": {"lo": 0},
    "eval_max_batches": {"lo": 1, "what": " (null: the whole validation split)"},
    "checkpoint_every": {"lo": 0},
    "keep_checkpoints": {"lo": 1},
    "grid_update_every": {"lo": 0},
    "grid_update_until": {"lo": 0},
    "grid_update_samples": {"lo": 1},
    "num_workers": {"lo": 0},
    "num_threads": {"lo": 1},
    "dist_timeout_s": {"lo": 0.0, "lo_open": True},
    "heartbeat_s": {"lo": 0.0},
}


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
        compile: Compile the whole (prepared) model with ``torch.compile`` for training steps
            (evaluation and checkpoints use the eager module, which shares its parameters).
        progress: Show a tqdm progress bar on the main process.
        detect_nonfinite: Stop with a clear error when the loss or the gradient norm becomes
            NaN/inf, before that update is applied (on CPU, or when the optimizer is not fused,
            checked every step; with a fused optimizer on an accelerator the bad update is skipped on
            the device and the error is raised at the next log step, so no step waits for the host).
        dist_timeout_s: Seconds a process waits in a collective for the others before the run
            fails (torch's default is 30 min for gloo); also bounds a stalled rank.
        heartbeat_s: Under DDP, report a rank that made no progress for this many seconds
            (0: off). The report names the rank, its pid/host and where in the step it is.
        latest_link: After a successful run, point this symlink (e.g. ``runs/kan_gpt/latest``) at
            the run directory, atomically (None: no link).
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
    dist_timeout_s: float = 600.0
    heartbeat_s: float = 60.0
    latest_link: str | None = None

    def __post_init__(self) -> None:
        if self.resume in ("", "none", "null", "None"):
            self.resume = None
        check_fields(self, "trainer", TRAINER_RULES)
        if self.device == "cuda":
            self.device = "gpu"

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainerConfig:
        """Build from a plain dict, rejecting unknown keys."""
        return _from_dict(cls, values, "trainer")
