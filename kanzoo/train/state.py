"""Resumable training state as safetensors + JSON: nothing in a checkpoint is ever unpickled.

A state object (an optimizer or scheduler ``state_dict``, RNG states, a GradScaler's state) is
stored as two files: ``<name>.safetensors`` holds every tensor, ``<name>.json`` the structure
around them (dicts, lists, tuples, numbers, strings) with ``{"__tensor__": key}`` where a tensor
was. Both readers accept only data: ``safetensors`` parses a header and raw buffers, ``json``
builds plain containers; a file that does not parse, a missing file or a missing tensor is a
:class:`CheckpointError` naming the file.

A resume directory holding a pickle (``*.pkl``, ``*.bin``, ``*.pt``, ``*.pth``, or any file that
starts like one, e.g. what ``accelerate.save_state`` writes) is refused by :func:`refuse_pickles`
before anything is read.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not what kanzoo wrote (one-line message)."""


# --------------------------------------------------------------------------- encoding
def _encode(obj: Any, tensors: dict[str, torch.Tensor], seen: dict[int, str], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        t = obj.detach().to("cpu")
        # safetensors refuses tensors sharing memory (tied weights): store a copy of the second.
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen[ptr] = key
        tensors[key] = t.contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not {_TENSOR, _TUPLE, _ITEMS} & set(obj):
            return {k: _encode(v, tensors, seen, f"{path}.{k}" if path else k) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot store a state key of type {type(k).__name__} at {path!r}")
            items.append([k, _encode(v, tensors, seen, f"{path}.{k}" if path else str(k))])
        return {_ITEMS: items}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, seen, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, seen, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a value of type {type(obj).__name__} at {path!r} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            key = obj[_TENSOR]
            if not isinstance(key, str) or key not in tensors:
                raise CheckpointError(f"{where} refers to tensor {key!r}, which its .safetensors file lacks")
            return tensors[key]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors, where) for v in _as_list(obj[_TUPLE], where))
        if set(obj) == {_ITEMS}:
            out = {}
            for item in _as_list(obj[_ITEMS], where):
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                    raise CheckpointError(f"{where} is not a kanzoo training-state file (bad item)")
                out[item[0]] = _decode(item[1], tensors, where)
            return out
        return {k: _decode(v, tensors, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    return obj


def _as_list(value: Any, where: Path) -> list:
    if not isinstance(value, list):
        raise CheckpointError(f"{where} is not a kanzoo training-state file")
    return value


# ------------------------------------------------------------------------- files
def save_state(directory: str | os.PathLike, name: str, obj: Any) -> None:
    """Write ``obj`` as ``<directory>/<name>.json`` + ``<name>.safetensors``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(obj, tensors, {}, "")
    save_file(tensors, str(directory / f"{name}.safetensors"), metadata={"format": "kanzoo-state"})
    with open(directory / f"{name}.json", "w") as f:
        json.dump(structure, f)
        f.flush()
        os.fsync(f.fileno())


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of the safetensors file ``path``; a missing/corrupt file is a one-line error."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for a corrupt header
        detail = " ".join(str(err).split())[:160]
        raise CheckpointError(f"checkpoint file {path} is corrupt or truncated ({detail})") from None


def load_state(directory: str | os.PathLike, name: str) -> Any:
    """Read what :func:`save_state` wrote (tensors on the CPU)."""
    directory = Path(directory)
    meta = directory / f"{name}.json"
    if not meta.is_file():
        raise CheckpointError(f"checkpoint file {meta} is missing")
    try:
        structure = json.loads(meta.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(
            f"checkpoint file {meta} is corrupt or truncated ({type(err).__name__})"
        ) from None
    return _decode(structure, load_tensors(directory / f"{name}.safetensors"), meta)


def refuse_pickles(directory: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` if ``directory`` holds a pickle (by name or by content)."""
    directory = Path(directory)
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix.lower() in _PICKLE_SUFFIXES or _looks_pickled(path):
            found.append(str(path.relative_to(directory)))
    if found:
        listed = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise CheckpointError(
            f"refusing to resume from {directory}: it holds pickle file(s) ({listed}), which could run "
            "code when loaded; kanzoo checkpoints are safetensors + JSON only (checkpoints written by "
            "accelerate's save_state are not supported): resume from a kanzoo checkpoint or start a "
            "new run"
        )


def _looks_pickled(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    # pickle protocol 2-5 opcode, or the zip container torch.save writes
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK\x03\x04"


# -------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when initialised) CUDA generator states, as tensors."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: Any, *, where: str) -> None:
    """Inverse of :func:`capture_rng`; a malformed state is a :class:`CheckpointError`."""
    try:
        py, npy = state["python"], state["numpy"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            (str(npy["kind"]), keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        )
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise CheckpointError(f"RNG state {where} is malformed ({type(err).__name__}: {err})") from None
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise CheckpointError(
                f"RNG state {where} holds {len(cuda)} CUDA generator(s) but "
                f"{torch.cuda.device_count()} device(s) are visible"
            )
        torch.cuda.set_rng_state_all(cuda)
