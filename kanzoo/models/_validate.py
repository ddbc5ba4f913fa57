"""One validation layer for checkpoints: ``config.json``, the safetensors header, and the tensors.

Every loader (``kanzoo.from_pretrained`` for every family, the families' ``from_pretrained``,
evaluate.py and ``python -m kanzoo.viz`` through them, and the importers in ``kanzoo.convert``)
checks a checkpoint here BEFORE building anything large:

1. :func:`read_config`: ``config.json`` is a JSON object of plain values (no NaN/Infinity, bounded
   nesting, a string family key, a known ``dtype``); problems name the file.
2. :func:`read_header`: the safetensors header is parsed by hand (shapes and dtypes only, no data):
   empty, truncated, random or pickled files are refused naming the file and what was expected.
3. :func:`build_skeleton`: the model the config describes is built on the meta device (nothing is
   allocated, initialisers skipped) while a parameter-registration hook stops the build as soon as
   it outgrows the weights file, so ``n_layer: 1000000`` fails in milliseconds instead of minutes.
   :func:`check_skeleton` then compares every shape and dtype with the header.
4. :func:`check_tensors`: NaN/inf values are refused (opt out: ``allow_nonfinite=True``), and so
   are integer, bool and fp8 tensors meant for float parameters.

:func:`key_mismatches` is the one missing/unexpected/wrong-shape report shared by the loaders and
the importers. Every error is a :class:`CheckpointError` (a ``ValueError``) or ``FileNotFoundError``
with one line that names the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "FLOAT_DTYPES",
    "CheckpointError",
    "CheckpointMismatchError",
    "KeyMismatch",
    "SkeletonTooLarge",
    "TensorInfo",
    "build_skeleton",
    "check_config_types",
    "check_skeleton",
    "check_tensors",
    "key_mismatches",
    "read_config",
    "read_header",
]

MAX_NESTING = 32
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit

# safetensors dtype codes -> (bytes per element, kind). Kinds: "float", "int", "bool", "fp8".
SAFETENSORS_DTYPES: dict[str, tuple[float, str]] = {
    "F64": (8, "float"),
    "F32": (4, "float"),
    "F16": (2, "float"),
    "BF16": (2, "float"),
    "F8_E4M3": (1, "fp8"),
    "F8_E5M2": (1, "fp8"),
    "F8_E8M0": (1, "fp8"),
    "F4": (0.5, "fp8"),
    "F6_E2M3": (0.75, "fp8"),
    "F6_E3M2": (0.75, "fp8"),
    "I64": (8, "int"),
    "I32": (4, "int"),
    "I16": (2, "int"),
    "I8": (1, "int"),
    "U64": (8, "int"),
    "U32": (4, "int"),
    "U16": (2, "int"),
    "U8": (1, "int"),
    "BOOL": (1, "bool"),
    "C64": (8, "complex"),
}

# ``dtype``/``torch_dtype`` values a config may name (transformers writes these).
_CONFIG_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64", "auto", "float", "half", "double"})


#: The floating-point dtypes a checkpoint tensor may have (fp8 and smaller are refused).
FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


class CheckpointError(ValueError):
    """A checkpoint file (config or weights) is not what kanzoo expects; one line naming the file."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the model: names missing/unexpected keys and shape mismatches."""


class SkeletonTooLarge(CheckpointError):
    """The config describes a model larger than its weights file (stopped while building on meta)."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header: its dtype code and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def kind(self) -> str:
        return SAFETENSORS_DTYPES[self.dtype][1]


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a checkpoint's ``config.json`` into a dict of plain JSON values.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Not UTF-8 JSON, not an object, NaN/Infinity, nesting deeper than
            ``MAX_NESTING``, a ``kanzoo_model``/``model_type`` that is not a string, or an unknown
            ``dtype``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; a kanzoo checkpoint needs config.json")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply (expected a flat config object)") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({_short(err)}); expected a config object") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(data).__name__}, expected an object of config fields"
        )
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise CheckpointError(f"{path}: values nested deeper than {MAX_NESTING} levels; expected a config")
    for key in ("kanzoo_model", "model_type"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise CheckpointError(
                f"{path}: {key!r} must be a family name string, "
                f"got {type(data[key]).__name__} {data[key]!r:.60}"
            )
    for key in ("dtype", "torch_dtype"):
        value = data.get(key)
        if value is not None and value not in _CONFIG_DTYPES:
            raise CheckpointError(
                f"{path}: {key!r} is {value!r:.60}; expected one of {sorted(_CONFIG_DTYPES)} or null"
            )
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_config_types(data: Mapping[str, Any], config_class: type, *, source: str) -> None:
    """Refuse config values whose JSON type differs from the field default's type.

    ``int`` fields take ints (not bools), ``float`` fields ints or floats, ``str``/``bool``/``list``/
    ``dict`` fields their own type; a field whose default is ``None`` accepts anything (the config
    class checks it). Unknown keys are left to the config class.
    """
    if not dataclasses.is_dataclass(config_class):
        return
    for field in dataclasses.fields(config_class):
        if field.name not in data:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        value = data[field.name]
        if default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, list)
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
        else:
            continue
        if not ok:
            raise CheckpointError(
                f"{source}: field {field.name!r} is {_type_name(value)} {value!r:.60}, "
                f"expected {type(default).__name__} (like the default {default!r:.40})"
            )


# ----------------------------------------------------------------------------------------------
# safetensors header
# ----------------------------------------------------------------------------------------------


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "; it looks like a torch.save zip archive (kanzoo loads safetensors only, never pickles)"
    if head[:1] == b"\x80":
        return "; it looks like a pickle (kanzoo loads safetensors only, never pickles)"
    return ""


def read_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Shapes and dtypes of the tensors in a safetensors file, read from its header (no data).

    Checks what ``safetensors`` checks when loading (header length, JSON, dtypes, shapes, data
    offsets that tile the data section exactly), with errors that name the file.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Empty, truncated, random, pickled or otherwise malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; a kanzoo checkpoint needs model.safetensors")
    size = path.stat().st_size
    expect = "expected a safetensors file (8-byte header length, JSON header, tensor data)"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is {size} bytes, too short for a safetensors header; {expect}")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES) or n < 2:
            raise CheckpointError(
                f"{path}: header length {n} does not fit the {size}-byte file; {expect}{_sniff(head)}"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise CheckpointError(f"{path}: header nested too deeply; {expect}") from None
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: the header is not JSON; {expect}{_sniff(head)}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is a JSON {type(header).__name__}; {expect}")
    data_len = size - 8 - n
    out: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: header entry {name!r:.80} is not an object; {expect}")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r:.80} has unknown dtype {dtype!r:.40}")
        if not (
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise CheckpointError(
                f"{path}: tensor {name!r:.80} has shape {shape!r:.60}, expected non-negative ints"
            )
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{path}: tensor {name!r:.80} has data_offsets {offsets!r:.60}")
        info = TensorInfo(dtype, tuple(shape))
        nbytes = info.numel * SAFETENSORS_DTYPES[dtype][0]
        if offsets[1] - offsets[0] != nbytes:
            raise CheckpointError(
                f"{path}: tensor {name!r:.80} {dtype}{list(shape)} needs {nbytes:.0f} bytes, "
                f"its data_offsets span {offsets[1] - offsets[0]}"
            )
        if offsets[1] > data_len:
            raise CheckpointError(
                f"{path} is truncated: tensor {name!r:.80} ends at byte {offsets[1]} of a "
                f"{data_len}-byte data section"
            )
        out[name] = info
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise CheckpointError(f"{path}: tensor {name!r:.80} data overlaps or leaves a gap; {expect}")
        pos = end
    if pos != data_len:
        raise CheckpointError(
            f"{path}: the header describes {pos} data bytes but the file holds {data_len}; {expect}"
        )
    return out


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


# ----------------------------------------------------------------------------------------------
# Building the model the config describes, without allocating it
# ----------------------------------------------------------------------------------------------

# In-place ops that change a tensor's shape or flags: these must run on the skeleton.
_KEEP_INPLACE = frozenset(
    {
        "resize_", "resize_as_", "set_", "as_strided_", "squeeze_", "unsqueeze_", "transpose_",
        "t_", "swapdims_", "swapaxes_", "requires_grad_", "share_memory_", "detach_",
        "rename_", "refine_names_", "align_to_",
    }
)  # fmt: skip


class _SkipMetaInit(TorchFunctionMode):
    """Skip value-only in-place ops (initialisers) on meta tensors: they have no values to set."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = getattr(func, "__name__", "")
        if (
            name.endswith("_")
            and not name.startswith("_")
            and name not in _KEEP_INPLACE
            and args
            and isinstance(args[0], torch.Tensor)
            and args[0].is_meta
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


def build_skeleton(
    build: Callable[[], nn.Module],
    header: Mapping[str, TensorInfo],
    *,
    source: str,
    config_source: str,
) -> nn.Module | None:
    """Build ``build()`` on the meta device, stopping once it outgrows the weights file.

    The build stops (:class:`SkeletonTooLarge`) when it has registered more than twice the file's
    tensors (plus 64) or twice its values (plus 2**20): sizes such as ``n_layer: 1000000`` are
    refused after a few blocks. A config the model class rejects (wrong types, bad ranges, sizes
    that overflow) is a :class:`CheckpointError` naming ``config_source``.

    Returns:
        The meta-device model, or ``None`` when a constructor needs real values (an operation with
        no meta kernel); the caller then builds for real.
    """
    tensors = len(header)
    values = sum(t.numel for t in header.values())
    max_tensors, max_values = 2 * tensors + 64, 2 * values + 2**20
    seen = {"tensors": 0, "values": 0}

    def on_param(module: nn.Module, name: str, param: Any) -> None:
        if param is None:
            return
        seen["tensors"] += 1
        seen["values"] += param.numel()
        if seen["tensors"] > max_tensors or seen["values"] > max_values:
            raise SkeletonTooLarge(
                f"{config_source} describes a model larger than {source} ({values} values in "
                f"{tensors} tensors): stopped building after {seen['tensors']} parameters with "
                f"{seen['values']} values; the config's sizes (layers, widths) do not fit the weights"
            )

    from torch.nn.modules.module import register_module_parameter_registration_hook

    handle = register_module_parameter_registration_hook(on_param)
    try:
        with torch.device("meta"), _SkipMetaInit():
            return build()
    except SkeletonTooLarge:
        raise
    except NotImplementedError:
        return None
    except (RuntimeError, OverflowError, MemoryError) as err:
        if "meta" in str(err) and "overflow" not in str(err).lower():
            return None
        raise CheckpointError(f"{config_source}: cannot build this config: {_short(err)}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, ZeroDivisionError) as err:
        raise CheckpointError(f"{config_source}: invalid config: {_short(err)}") from None
    finally:
        handle.remove()


@dataclasses.dataclass
class KeyMismatch:
    """Missing, unexpected and wrongly shaped keys of a state dict against a model."""

    missing: list[str]
    unexpected: list[str]
    shapes: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def message(self, source: str, target: str, *, limit: int = 8) -> str:
        """``"<source> does not fit <target>: missing keys (n): ...; unexpected keys ..."``."""
        parts = []
        for label, keys in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("shape mismatches", self.shapes),
        ):
            if keys:
                shown = ", ".join(keys[:limit])
                more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
                parts.append(f"{label} ({len(keys)}): {shown}{more}")
        return f"{source} does not fit {target}: " + "; ".join(parts)


def _shape_of(value: Any) -> tuple[int, ...]:
    if isinstance(value, TensorInfo):
        return value.shape
    return tuple(value.shape)


def key_mismatches(
    expected: Mapping[str, Any],
    found: Mapping[str, Any],
    *,
    name: Callable[[str], str] = str,
    ignore_unexpected: Iterable[str] = (),
) -> KeyMismatch:
    """Compare two ``name -> tensor/TensorInfo/shape-holder`` mappings.

    Args:
        expected: What the model holds (its ``state_dict``), under the names ``found`` uses.
        found: What the checkpoint holds.
        name: Maps a key to the name shown in messages (e.g. the peer's own naming).
        ignore_unexpected: Checkpoint keys that may be present without a model counterpart.

    Returns:
        The :class:`KeyMismatch` (falsy when everything fits).
    """
    skip = set(ignore_unexpected)
    missing = sorted(name(k) for k in expected if k not in found)
    unexpected = sorted(name(k) for k in found if k not in expected and k not in skip)
    shapes = sorted(
        f"{name(k)}: checkpoint {_shape_of(found[k])} vs model {_shape_of(expected[k])}"
        for k in expected
        if k in found and _shape_of(found[k]) != _shape_of(expected[k])
    )
    return KeyMismatch(missing, unexpected, shapes)


def _tied_missing(model: nn.Module, missing: list[str], present: Iterable[str]) -> list[str]:
    """Drop missing keys whose tensor is the very object of a present key (tied weights)."""
    tensors = model.state_dict(keep_vars=True)
    have = {id(tensors[k]) for k in present if k in tensors}
    return [k for k in missing if id(tensors.get(k)) not in have]


def check_skeleton(
    skeleton: nn.Module,
    header: Mapping[str, TensorInfo],
    *,
    source: str,
    strict: bool = True,
    check_shapes: bool = True,
) -> None:
    """Compare the meta-built model with the header: keys (``strict``), shapes and dtypes.

    Parameters and floating buffers must be stored as float16/bfloat16/float32/float64; integer or
    bool buffers must be stored as integers/bools.
    """
    expected = skeleton.state_dict()
    report = key_mismatches(expected, header)
    report.missing = _tied_missing(skeleton, report.missing, header)
    if not strict:
        report.missing, report.unexpected = [], []
    if not check_shapes:
        report.shapes = []
    if report:
        raise CheckpointMismatchError(report.message(source, type(skeleton).__name__))
    for key, tensor in expected.items():
        info = header.get(key)
        if info is None:
            continue
        want = "float" if tensor.is_floating_point() else "bool" if tensor.dtype == torch.bool else "int"
        got = info.kind
        if want == "float" and got != "float":
            raise CheckpointError(
                f"{source}: tensor {key!r} is stored as {info.dtype}; expected a float16/bfloat16/"
                "float32/float64 tensor for this floating-point parameter (no silent casts)"
            )
        if want != "float" and got not in ("int", "bool"):
            raise CheckpointError(f"{source}: tensor {key!r} is stored as {info.dtype}; expected integers")


# ----------------------------------------------------------------------------------------------
# Tensor values
# ----------------------------------------------------------------------------------------------


def check_tensors(
    tensors: Mapping[str, torch.Tensor],
    *,
    source: str,
    allow_nonfinite: bool = False,
    float_keys: Iterable[str] | None = None,
) -> None:
    """Refuse NaN/inf values and, for ``float_keys``, tensors that are not floating point.

    Args:
        tensors: Name -> tensor.
        source: The file (or object) named in the error.
        allow_nonfinite: Accept NaN/inf (off by default; e.g. to inspect a diverged run).
        float_keys: Keys that must hold floating-point tensors (they go into float parameters);
            ``None`` checks nothing about dtypes.

    Raises:
        CheckpointError: Naming the first offending tensor and ``source``.
    """
    for key in float_keys or ():
        value = tensors.get(key)
        if value is not None and not value.is_floating_point():
            raise CheckpointError(
                f"{source}: tensor {key!r} has dtype {str(value.dtype).removeprefix('torch.')}; "
                "expected a floating-point tensor (no silent casts of integer/bool values)"
            )
    for key, value in tensors.items():
        if value.is_floating_point() and value.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{source}: tensor {key!r} is {str(value.dtype).removeprefix('torch.')}; "
                "expected float16/bfloat16/float32/float64 (fp8 is not loaded silently)"
            )
        if allow_nonfinite or not (value.is_floating_point() or value.is_complex()):
            continue
        if value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: tensor {key!r} has {bad} NaN/inf value(s) of {value.numel()}; expected finite "
                "weights (pass allow_nonfinite=True to load them anyway)"
            )
