"""Hugging Face hub names that fail at once when the hub cannot be used.

Without a network, ``datasets.load_dataset("owner/name")`` and ``AutoTokenizer.from_pretrained``
retry for 25-50 s before they fail. kanzoo asks first: if an offline variable is set, or the hub's
host does not accept a connection within a few seconds (checked once per process), the call runs
with the libraries in offline mode, so a cached copy still loads and anything else fails at once
with a one-line error. With a proxy configured nothing is probed (the client knows the way).

This module imports only the standard library; the hub libraries are imported by the callers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

__all__ = ["hub_cache_only", "hub_unavailable", "load_hub_dataset", "one_line_error"]

_TRUE = {"1", "on", "yes", "true"}
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 3.0


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in _TRUE


def offline_variable(kind: str) -> str | None:
    """The offline variable that is set for ``kind`` (``"dataset"`` or ``"model"``), else None.

    As in the libraries: for datasets ``HF_DATASETS_OFFLINE`` decides when it is present, else
    ``HF_HUB_OFFLINE``; for models and tokenizers ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``.
    """
    if kind == "dataset":
        flag = _env_flag("HF_DATASETS_OFFLINE")
        if flag is not None:
            return "HF_DATASETS_OFFLINE" if flag else None
        return "HF_HUB_OFFLINE" if _env_flag("HF_HUB_OFFLINE") else None
    return next((name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_flag(name)), None)


@functools.cache
def _unreachable(endpoint: str, timeout: float) -> str | None:
    url = urlparse(endpoint)
    host = url.hostname
    if not host:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as err:
            result.append(f"{host} cannot be reached ({err.strerror or type(err).__name__})")

    thread = threading.Thread(target=probe, daemon=True)  # name resolution has no timeout of its own
    thread.start()
    thread.join(timeout + 1.0)
    return result[0] if result else f"{host} did not answer within {timeout:g} s"


def hub_unavailable(kind: str = "model") -> str | None:
    """Why the hub cannot be used now (``"HF_HUB_OFFLINE is set"``, ``"huggingface.co cannot be
    reached (...)"``), or None when it may be.

    Args:
        kind: ``"dataset"`` or ``"model"`` (models and tokenizers): which offline variables count.
    """
    var = offline_variable(kind)
    if var is not None:
        return f"{var} is set"
    if any(os.environ.get(p) for p in _PROXIES):
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return _unreachable(endpoint, PROBE_TIMEOUT_S)


@contextlib.contextmanager
def hub_cache_only() -> Iterator[None]:
    """Put huggingface_hub, datasets and transformers (those already imported) in offline mode."""
    targets = [
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ]
    saved = []
    for module_name, attr in targets:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, True)
    try:
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def one_line_error(err: BaseException) -> str:
    """``Type: message`` of a library error folded onto one line (it may span several)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load_hub_dataset(name: str, config_name: str | None = None, *, what: str = "dataset", hint: str = ""):
    """``datasets.load_dataset(name, config_name)`` that fails at once when the hub cannot be used.

    Args:
        name: A hub dataset name (the caller has ruled out local paths).
        config_name: The dataset's configuration, if any.
        what: How the error names the input (``"text dataset"``).
        hint: What the user can do instead, appended to the error.

    Raises:
        FileNotFoundError: One line naming the dataset, why the hub could not be used and the library's
            own error.
    """
    from kanzoo._extras import import_extra

    datasets = import_extra("datasets", needed_by="kanzoo.data")
    reason = hub_unavailable("dataset")
    try:
        with hub_cache_only() if reason else contextlib.nullcontext():
            return datasets.load_dataset(name, config_name)
    except Exception as err:  # offline, unknown or gated name; the exception types vary by version
        why = f" ({reason}, and it is not in the datasets cache)" if reason else ""
        tail = f"; {hint}" if hint else ""
        raise FileNotFoundError(
            f"{what} {name!r} is not a local path and could not be loaded from the hub{why}{tail}"
            f" [{one_line_error(err)}]"
        ) from None
