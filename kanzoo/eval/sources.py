"""What ``evaluate`` runs on: the checkpoint (and its task) and the data, prepared as in training.

A checkpoint written by the trainer records its data config (``train_summary.json``). Evaluating
on other data (``data=segmentation_folder data.root=DIR``, ``data=busi``) must still feed the model
what it was trained on, so :func:`resolve_eval_data` layers the settings as

    the data config's defaults  <  the checkpoint's recorded preprocessing  <  what the user set

for the preprocessing fields in :data:`PREPROCESSING_KEYS` (input size, channels, normalization,
mask decoding, tokenizer, block size) that the chosen builder accepts. A tokenizer saved beside the
weights is used unless the user names another. The result records every preprocessing field and
where its value came from (``explicit``, ``checkpoint`` or ``default``) for ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from kanzoo._cli import UserInputError

__all__ = [
    "PREPROCESSING_KEYS",
    "default_data",
    "load_checkpoint",
    "recorded_data",
    "resolve_data",
    "resolve_eval_data",
]

#: Data settings that change what the model sees; a data override inherits them from the checkpoint.
PREPROCESSING_KEYS = (
    "image_size",
    "in_chans",
    "mean",
    "std",
    "mask_mode",
    "num_classes",
    "mask_threshold",
    "value_map",
    "ignore_value",
    "tokenizer",
    "block_size",
)
#: Values of the resolved DataModule's ``info`` also reported (what the data code actually used).
_INFO_KEYS = (
    "image_size",
    "in_chans",
    "mean",
    "std",
    "num_classes",
    "ignore_index",
    "block_size",
    "vocab_size",
)


# ------------------------------------------------------------------------------------- checkpoints
def checkpoint_dir(checkpoint: Any) -> Path | None:
    """The local folder of a checkpoint (a directory or a shipped name), else None."""
    if isinstance(checkpoint, nn.Module):
        return None
    path = Path(str(checkpoint)).expanduser()
    if path.is_dir():
        return path
    from kanzoo.models import pretrained_dir

    shipped = pretrained_dir() / str(checkpoint)
    return shipped if shipped.is_dir() else None


def load_checkpoint(checkpoint: Any) -> tuple[nn.Module, str, str | None]:
    """Load ``checkpoint`` and work out its task.

    Args:
        checkpoint: a directory written by ``save_pretrained``, a shipped checkpoint name, a hub id,
            or an already built ``nn.Module`` (for tests and notebooks).

    Returns:
        ``(model, display_name, task)``; task is ``"lm"``, ``"classification"``, ``"segmentation"``
        (or another registered task) or None when it cannot be told.
    """
    if isinstance(checkpoint, nn.Module):
        return checkpoint, type(checkpoint).__name__, _task_from_model(checkpoint)
    from kanzoo.models import from_pretrained

    model = from_pretrained(str(checkpoint))
    path = Path(str(checkpoint)).expanduser()
    name = str(checkpoint)
    task = None
    if path.is_dir():
        name = display_name(path)
        task = _task_from_dir(path)
    return model, name, task or _task_from_model(model)


def display_name(path: Path) -> str:
    """``runs/kan_unet/<time>/final`` -> ``kan_unet/<time>/final``: enough to tell runs apart."""
    path = path.resolve()
    if path.name in ("final", "best", "latest") or path.name.startswith("step_"):
        return "/".join(path.parts[-3:])
    return path.name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _summaries(path: Path) -> list[dict[str, Any]]:
    out = []
    for candidate in (path / "train_summary.json", path.parent / "train_summary.json"):
        if candidate.is_file():
            data = _read_json(candidate)
            if isinstance(data, dict):
                out.append(data)
    return out


def _task_of_family(key: Any) -> str | None:
    """The registered task of model family (or model name) ``key``; None when unknown."""
    if not isinstance(key, str) or not key:
        return None
    from kanzoo.models import is_model, list_models, model_info

    if is_model(key):
        return model_info(key).get("task")
    names = list_models(family=key)
    return model_info(names[0]).get("task") if names else None


def _task_from_dir(path: Path) -> str | None:
    for summary in _summaries(path):
        if isinstance(summary.get("task"), str) and summary["task"]:
            return summary["task"]
    cfg = _read_json(path / "config.json")
    if isinstance(cfg, dict):
        return _task_of_family(cfg.get("kanzoo_model") or cfg.get("model_type"))
    return None


def _task_from_model(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    task = getattr(cfg, "task", None)
    if isinstance(task, str):
        return task
    key = getattr(model, "kanzoo_model", None) or getattr(cfg, "kanzoo_model", None)
    return _task_of_family(key or getattr(cfg, "model_type", None))


def recorded_data(checkpoint: Any) -> dict[str, Any] | None:
    """The data config a checkpoint was trained with (``{"name": ..., **kwargs}``), or None.

    From ``train_summary.json`` (the checkpoint's, else its run folder's); a summary naming only
    its model falls back to that model's registered ``default_data``.
    """
    path = checkpoint_dir(checkpoint)
    if path is None:
        return None
    for summary in _summaries(path):
        data = (summary.get("config") or {}).get("data") if isinstance(summary.get("config"), dict) else None
        if isinstance(data, Mapping) and data.get("name"):
            return dict(data)
        if isinstance(data, str) and data:
            return {"name": data}
        model_name = summary.get("model")
        if isinstance(model_name, str):
            from kanzoo.models import is_model, model_info

            if is_model(model_name) and model_info(model_name).get("default_data"):
                default = model_info(model_name)["default_data"]
                return dict(default) if isinstance(default, Mapping) else {"name": str(default)}
    return None


def default_data(checkpoint: Any) -> Any:
    """The data a checkpoint was trained on (see :func:`recorded_data`); None when unknown."""
    data = recorded_data(checkpoint)
    if data is not None and set(data) == {"name"}:
        return data["name"]
    return data


def _recorded_preprocessing(checkpoint: Any) -> dict[str, Any]:
    """Preprocessing recorded with the checkpoint: its data config, else sizes from config.json."""
    out: dict[str, Any] = {}
    data = recorded_data(checkpoint)
    if data:
        out.update({k: data[k] for k in PREPROCESSING_KEYS if k in data})
    path = checkpoint_dir(checkpoint)
    if path is None:
        return out
    cfg = _read_json(path / "config.json")
    if isinstance(cfg, dict):
        size = cfg.get("img_size", cfg.get("image_size"))
        if "image_size" not in out and isinstance(size, int) and not isinstance(size, bool):
            out["image_size"] = size
        if "in_chans" not in out and isinstance(cfg.get("in_chans"), int):
            out["in_chans"] = cfg["in_chans"]
    if (path / "kanzoo_tokenizer.json").is_file() or (path / "tokenizer.json").is_file():
        out["tokenizer"] = str(path)  # the exact vocabulary the model was trained with
    return out


# ------------------------------------------------------------------------------------------- data
def resolve_data(data: Any, *, protocol: str = "per_image") -> tuple[Any, str]:
    """Build a DataModule from a name, a config mapping (``{"name": ..., **kwargs}``) or pass one through.

    Benchmark names (``busi``, ``glas``, ``cvc_clinicdb``, ``kvasir_seg``, ``isic2018``) get the
    ``protocol`` (their split depends on it).
    """
    from kanzoo.data import DataModule, build_data
    from kanzoo.data.benchmarks import BENCHMARKS

    if isinstance(data, DataModule):
        return data, str(data.info.get("name", "data"))
    name, kwargs = _name_and_kwargs(data)
    if name in BENCHMARKS:
        return build_data(name, protocol=protocol, **kwargs), name
    if protocol == "ukan":
        raise UserInputError(
            f"protocol=ukan applies to the segmentation benchmarks ({', '.join(BENCHMARKS)}), not to {name!r}"
        )
    return build_data(name, **kwargs), name


def _name_and_kwargs(data: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(data, str):
        return data, {}
    if isinstance(data, Mapping):
        kwargs = {str(k): v for k, v in dict(data).items() if not str(k).startswith("_")}
        name = kwargs.pop("name", None)
        if not isinstance(name, str) or not name:
            raise UserInputError(
                f"data config needs a 'name' (a dataset or benchmark), got keys {sorted(kwargs)}"
            )
        return name, kwargs
    raise UserInputError(f"data must be a name, a config mapping or a DataModule, got {type(data).__name__}")


def resolve_eval_data(
    checkpoint: Any,
    data: Any,
    *,
    defaults: Mapping[str, Any] | None = None,
    protocol: str = "per_image",
) -> tuple[Any, str, dict[str, Any]]:
    """The DataModule to evaluate ``checkpoint`` on, prepared as the checkpoint was trained.

    Args:
        checkpoint: directory, shipped name, hub id or module.
        data: None (the data recorded with the checkpoint), a name, a mapping
            ``{"name": ..., **settings}`` whose settings all count as set by the user, or a
            DataModule (used as it is).
        defaults: the data config's defaults (e.g. the rest of a YAML group), which the
            checkpoint's recorded preprocessing overrides.
        protocol: evaluation protocol (benchmark splits depend on it).

    Returns:
        ``(data_module, data_name, provenance)``; provenance has ``preprocessing`` (every
        preprocessing field used) and ``preprocessing_source`` (``explicit``/``checkpoint``/
        ``default`` per field).

    Raises:
        UserInputError: no data given and none recorded, or a malformed data config.
    """
    from kanzoo.data import DataModule
    from kanzoo.data.base import builder_parameters

    if isinstance(data, DataModule):
        dm, name = resolve_data(data, protocol=protocol)
        return dm, name, _provenance(dm, {}, {})
    if data is None:
        recorded = recorded_data(checkpoint)
        if recorded is None:
            raise UserInputError(
                f"no data given and none recorded with checkpoint {checkpoint!r}; pass data=<name>"
            )
        name, explicit = _name_and_kwargs(recorded)
        base, base_source, explicit = explicit, "checkpoint", {}
    else:
        name, explicit = _name_and_kwargs(data)
        base = _name_and_kwargs({"name": name, **dict(defaults)})[1] if defaults else {}
        base_source = "default"
    params = builder_parameters(name) if _known(name) else None
    merged = dict(base)
    source = {k: base_source for k in base if k in PREPROCESSING_KEYS}
    for key, value in _recorded_preprocessing(checkpoint).items():
        if key in explicit or (params is not None and key not in params):
            continue
        merged[key] = value
        source[key] = "checkpoint"
    for key, value in explicit.items():
        merged[key] = value
        if key in PREPROCESSING_KEYS:
            source[key] = "explicit"
    dm, data_name = resolve_data({"name": name, **merged}, protocol=protocol)
    return dm, data_name, _provenance(dm, merged, source)


def _known(name: str) -> bool:
    from kanzoo.data import list_datasets

    return name in list_datasets()


def _provenance(dm: Any, merged: Mapping[str, Any], source: Mapping[str, str]) -> dict[str, Any]:
    info = getattr(dm, "info", None) or {}
    used: dict[str, Any] = {}
    for key in PREPROCESSING_KEYS:
        if key in merged:
            used[key] = merged[key]
    for key in _INFO_KEYS:
        if key in info and info[key] is not None:
            value = info[key]
            used[key] = list(value) if isinstance(value, tuple) else value
    tok = info.get("tokenizer")
    if tok is not None and not isinstance(used.get("tokenizer"), str):
        used["tokenizer"] = repr(tok)
    elif tok is not None:
        used["tokenizer"] = (
            f"{used['tokenizer']} ({type(tok).__name__}, vocab {getattr(tok, 'vocab_size', '?')})"
        )
    sources = {k: source.get(k, "data") for k in used}
    return {"preprocessing": used, "preprocessing_source": sources}
