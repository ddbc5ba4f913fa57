"""Model registry: named constructors, metadata, and checkpoint loading.

A family module registers one tiny function per size::

    @register_model(task="classification", family="conv_kan", default_data="digits")
    def conv_kan_tiny(**overrides) -> nn.Module:
        return ConvKAN(ConvKANConfig(**{**TINY, **overrides}))

The function name is the model name. ``create_model(name, **overrides)`` calls it;
``model_info(name)`` returns its metadata (the trainer builds its configuration from it).
Checkpoints are dispatched by ``register_family(key, cls)``: a saved ``config.json`` carries
``"kanzoo_model": key`` and ``from_pretrained`` hands the directory to ``cls.from_pretrained``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "create_model",
    "from_pretrained",
    "is_model",
    "list_families",
    "list_models",
    "list_pretrained",
    "model_entrypoint",
    "model_info",
    "pretrained_dir",
    "register_alias",
    "register_family",
    "register_model",
]

_TASKS = ("classification", "segmentation", "lm", "forecasting", "regression", "pde")

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_METADATA: dict[str, dict[str, Any]] = {}
_ALIASES: dict[str, str] = {}
_FAMILIES: dict[str, type] = {}

# Shipped checkpoints live inside the package: kanzoo/pretrained/<name>/{config.json,model.safetensors}.
_PRETRAINED_ROOT = Path(__file__).resolve().parent.parent / "pretrained"


def _family_from_name(name: str) -> str:
    """Guess the family key from a model name (``kan_vit_tiny`` -> ``kan_vit``)."""
    for prefix in ("kan_gpt", "conv_kan", "kan_unet", "kan_vit", "gpt", "cnn", "unet", "vit"):
        if name == prefix or name.startswith(prefix + "_"):
            return prefix
    return name.split("_")[0]


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    task: str | None = None,
    family: str | None = None,
    default_data: str | None = None,
    twin_of: str | None = None,
    aliases: tuple[str, ...] | list[str] = (),
    **extra: Any,
) -> Any:
    """Register a model constructor under its function name.

    Usable bare (``@register_model``) or with metadata (``@register_model(task="lm")``).

    Args:
        fn: The constructor ``(**overrides) -> nn.Module``; its ``__name__`` becomes the model name.
        task: One of ``"classification"``, ``"segmentation"``, ``"lm"``.
        family: Family key (e.g. ``"kan_vit"``); guessed from the name when omitted.
        default_data: Name of the dataset the trainer uses when none is given.
        twin_of: For an MLP/CNN twin, the name of the KAN model it mirrors.
        aliases: Extra names that resolve to this model (e.g. the base name ``"kan_vit"``).
        **extra: Further JSON-friendly metadata (e.g. ``input_size=(3, 32, 32)``, ``data=[...]``).

    Returns:
        The function unchanged (or a decorator when called with metadata only).
    """
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")

    def _register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _ALIASES:
            raise ValueError(f"model name {name!r} is already an alias of {_ALIASES[name]!r}")
        _ENTRYPOINTS[name] = f
        _METADATA[name] = {
            "task": task,
            "family": family or _family_from_name(name),
            "default_data": default_data,
            "twin_of": twin_of,
            "matched": name.endswith("_matched"),
            "module": f.__module__,
            **extra,
        }
        for alias in aliases:
            register_alias(alias, name)
        return f

    if fn is not None:
        return _register(fn)
    return _register


def register_alias(alias: str, target: str) -> None:
    """Make ``alias`` resolve to the registered model ``target`` (e.g. ``kan_vit`` -> ``kan_vit_tiny``).

    Args:
        alias: The extra name.
        target: An already registered model name.
    """
    if target not in _ENTRYPOINTS:
        raise ValueError(f"cannot alias {alias!r}: {target!r} is not a registered model")
    if alias in _ENTRYPOINTS:
        raise ValueError(f"cannot alias {alias!r}: it is already a registered model")
    _ALIASES[alias] = target


def register_family(key: str, cls: type) -> type:
    """Register the class that loads checkpoints whose ``config.json`` has ``"kanzoo_model": key``.

    Args:
        key: The family key written into ``config.json``.
        cls: A class with a ``from_pretrained(directory, **kwargs)`` classmethod.

    Returns:
        ``cls`` (so it can be used as a class decorator through ``functools.partial``).
    """
    if not hasattr(cls, "from_pretrained"):
        raise TypeError(f"{cls!r} has no from_pretrained classmethod")
    _FAMILIES[key] = cls
    return cls


def list_families() -> list[str]:
    """Sorted checkpoint family keys known to :func:`from_pretrained`."""
    return sorted(_FAMILIES)


def _resolve(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    if name in _ENTRYPOINTS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = sorted(set(_ENTRYPOINTS) | set(_ALIASES))
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} Registered models: {', '.join(known) or '(none)'}.")


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model or alias."""
    return name in _ENTRYPOINTS or name in _ALIASES


def list_models(
    pattern: str = "*",
    *,
    task: str | None = None,
    family: str | None = None,
    include_aliases: bool = False,
) -> list[str]:
    """Sorted registered model names matching a shell-style pattern.

    Args:
        pattern: ``fnmatch`` pattern, e.g. ``"kan_*"`` or ``"*_tiny"``.
        task: Keep only models of this task.
        family: Keep only models of this family.
        include_aliases: Also list alias names (base names like ``"kan_vit"``).

    Returns:
        The matching names, sorted.
    """
    names = list(_ENTRYPOINTS)
    if include_aliases:
        names += list(_ALIASES)
    out = []
    for name in names:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        meta = _METADATA[_resolve(name)]
        if task is not None and meta["task"] != task:
            continue
        if family is not None and meta["family"] != family:
            continue
        out.append(name)
    return sorted(out)


def model_info(name: str) -> dict[str, Any]:
    """Metadata of a registered model (aliases resolve to their target).

    Returns:
        A new dict with ``name`` (resolved), ``task``, ``family``, ``default_data``, ``twin_of``
        (the KAN model a twin mirrors, else None), ``twin`` (the plain twin of a KAN model, else None),
        ``matched_twin`` (its parameter-matched twin, else None), ``alias_of`` and any extra metadata.
    """
    resolved = _resolve(name)
    info = dict(_METADATA[resolved])
    info["name"] = resolved
    info["alias_of"] = resolved if name != resolved else None
    twins = sorted(n for n, m in _METADATA.items() if m["twin_of"] == resolved)
    info["twin"] = next((n for n in twins if not _METADATA[n]["matched"]), None)
    info["matched_twin"] = next((n for n in twins if _METADATA[n]["matched"]), None)
    return info


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered constructor for ``name``."""
    return _ENTRYPOINTS[_resolve(name)]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model with optional configuration overrides.

    Args:
        name: A registered model name or alias (see :func:`list_models`).
        **overrides: Config fields to override, e.g. ``num_classes=10``.

    Returns:
        The freshly initialised model.

    Raises:
        ValueError: Unknown name (the message lists the closest registered names).
    """
    return _ENTRYPOINTS[_resolve(name)](**overrides)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def pretrained_dir() -> Path:
    """Directory holding the checkpoints shipped inside the package."""
    return _PRETRAINED_ROOT


def list_pretrained(pattern: str = "*") -> list[str]:
    """Sorted names of the checkpoints shipped with the package (``kanzoo/pretrained/<name>/``)."""
    if not _PRETRAINED_ROOT.is_dir():
        return []
    return sorted(
        p.name
        for p in _PRETRAINED_ROOT.iterdir()
        if (p / "config.json").is_file() and fnmatch.fnmatchcase(p.name, pattern)
    )


def _load_from_dir(directory: Path, **kwargs: Any) -> nn.Module:
    from kanzoo.models import _validate as V
    from kanzoo.models._base import KanzooModel

    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json; is it a saved kanzoo checkpoint?")
    config = V.read_config(config_path)
    key = config.get("kanzoo_model") or config.get("model_type")
    if key is None:
        raise ValueError(
            f"{config_path} has neither 'kanzoo_model' nor 'model_type'; cannot pick a model class"
        )
    if key not in _FAMILIES:
        raise ValueError(
            f"{config_path} describes a {key!r} model, but no kanzoo family {key!r} is registered "
            f"(known: {', '.join(list_families()) or '(none)'})"
        )
    cls = _FAMILIES[key]
    if isinstance(cls, type) and issubclass(cls, KanzooModel):
        # The family's from_pretrained runs the whole validation layer itself.
        model = cls.from_pretrained(directory, **kwargs)
    else:
        model = _load_validated(cls, directory, config_path, config, kwargs)
    if any(p.dtype == torch.float64 for p in model.parameters()):
        _restore_float64_buffers(model, directory)
    return model


def _weights_header(directory: Path) -> tuple[str, dict[str, Any]]:
    """The merged safetensors header of a checkpoint directory, and the name used in errors."""
    from kanzoo.models import _validate as V

    single = directory / "model.safetensors"
    files = [single] if single.is_file() else sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory} has no model.safetensors; is it a saved kanzoo checkpoint?")
    header: dict[str, Any] = {}
    for file in files:
        header.update(V.read_header(file))
    return (str(files[0]) if len(files) == 1 else f"{directory}/*.safetensors"), header


def _load_validated(
    cls: type, directory: Path, config_path: Path, config: dict[str, Any], kwargs: dict[str, Any]
) -> nn.Module:
    """Validate a checkpoint of a family with its own loader (KAN-GPT, through transformers), then load.

    The config is built on the meta device and compared with the safetensors header (sizes, shapes,
    dtypes) before transformers allocates anything; the loaded tensors are checked for NaN/inf.
    """
    from kanzoo.models import _validate as V

    allow_nonfinite = bool(kwargs.pop("allow_nonfinite", False))
    source, header = _weights_header(directory)
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and hasattr(config_class, "from_dict"):
        V.check_config_types(config, config_class, source=str(config_path))

        def build() -> nn.Module:
            return cls(config_class.from_dict(dict(config)))

        skeleton = V.build_skeleton(build, header, source=source, config_source=str(config_path))
        if skeleton is not None:
            V.check_skeleton(
                skeleton,
                header,
                source=source,
                strict=kwargs.get("strict") is not False,
                check_shapes=not kwargs.get("ignore_mismatched_sizes", False),
            )
            del skeleton
    model = cls.from_pretrained(directory, **kwargs)
    module = model[0] if isinstance(model, tuple) else model
    V.check_tensors(module.state_dict(), source=source, allow_nonfinite=allow_nonfinite)
    return model


def _restore_float64_buffers(model: nn.Module, directory: Path) -> None:
    """Put a float64 checkpoint's exact knots back into a float64 model.

    KAN bases keep knots in float32 buffers (so that half-precision casts leave them alone); a
    loader that copies into the existing buffers rounds float64 knots to float32.
    """
    from safetensors import safe_open

    buffers = dict(model.named_buffers())
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                buf = buffers.get(name)
                if buf is None or buf.dtype == torch.float64 or not buf.is_floating_point():
                    continue
                value = fh.get_tensor(name)
                if value.dtype == torch.float64 and value.shape == buf.shape:
                    owner, _, leaf = name.rpartition(".")
                    model.get_submodule(owner)._buffers[leaf] = value.to(buf.device)


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and all(not p.startswith(".") for p in parts)
    )


def _download_from_hub(repo_id: str, revision: str | None = None) -> Path:
    from kanzoo._extras import import_extra
    from kanzoo._hub import hub_unavailable, one_line_error

    snapshot_download = import_extra("huggingface_hub", needed_by=__name__).snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    reason = hub_unavailable("model")  # offline variable set, or the hub host unreachable: cache only
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.md"],
            etag_timeout=5,
            local_files_only=reason is not None,
        )
    except LocalEntryNotFoundError as err:
        why = reason or "the hub could not be reached"
        raise OSError(
            f"Cannot load {repo_id!r}: it is not a local directory, not a shipped checkpoint "
            f"({', '.join(list_pretrained()) or 'none shipped'}), and not in the hub cache while {why}. "
            "Pass a local directory saved with save_pretrained, or go online to download it."
        ) from err
    except Exception as err:  # network errors, missing repo, gated repo
        detail = one_line_error(err)
        raise OSError(f"Cannot download {repo_id!r} from the Hugging Face hub: {detail}") from err
    return Path(path)


def from_pretrained(path_or_name: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load a saved model: a local directory, a shipped checkpoint name, or a hub id.

    Args:
        path_or_name: A directory written by ``save_pretrained``; a name from :func:`list_pretrained`;
            or a Hugging Face hub id ``"owner/repo"`` (fails fast with a clear message when offline).
        **kwargs: Forwarded to the family's ``from_pretrained`` (e.g. ``revision`` for hub ids is
            consumed here). ``allow_nonfinite=True`` loads NaN/inf weights, refused by default.

    Returns:
        The model with its weights loaded, in eval mode.

    Raises:
        FileNotFoundError: A path-like argument that does not exist.
        OSError: A hub id that cannot be fetched (e.g. offline).
        ValueError: A checkpoint of an unknown family, or one that fails the validation layer
            (``kanzoo.models._validate``): a malformed config.json or safetensors file, config sizes
            that do not fit the weights, integer/fp8 tensors for float parameters, NaN/inf weights.
    """
    revision = kwargs.pop("revision", None)
    path = Path(os.fspath(path_or_name)).expanduser()
    if path.is_dir():
        return _load_from_dir(path, **kwargs)
    if path.is_file():
        raise FileNotFoundError(
            f"{path} is a file; from_pretrained expects the directory holding config.json and "
            "model.safetensors"
        )
    text = os.fspath(path_or_name)
    if text in list_pretrained():
        return _load_from_dir(_PRETRAINED_ROOT / text, **kwargs)
    if _looks_like_hub_id(text):
        return _load_from_dir(_download_from_hub(text, revision), **kwargs)
    shipped = list_pretrained()
    close = difflib.get_close_matches(text, shipped, n=5, cutoff=0.5)
    hint = f" Closest shipped checkpoints: {', '.join(close)}." if close else ""
    untrained = (
        f" {text!r} is a model architecture; use create_model({text!r}) for a randomly initialised one."
        if is_model(text)
        else ""
    )
    raise FileNotFoundError(
        f"No checkpoint {text!r}: not an existing directory, not a shipped checkpoint "
        f"(shipped: {', '.join(shipped) or 'none'}), and not a hub id of the form 'owner/repo'."
        f"{hint}{untrained}"
    )
