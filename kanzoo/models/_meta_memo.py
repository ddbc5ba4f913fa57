"""A dispatch mode that remembers the output shapes of operators on the meta device.

Building and running a model on the meta device computes no numbers, yet every operator still runs
its shape function, and for most elementwise operators that function is a Python decomposition
(broadcasting, type promotion, stride inference): about a millisecond each. A model table runs
tens of thousands of them, most of them repeats (twelve identical transformer blocks, the same
initialiser on every layer of one width).

:class:`MetaShapeMemo` answers a repeat from a table instead: the key is the operator and the
metadata of its arguments (shape, stride, dtype of every meta tensor; the value of everything
else), the answer is the output's metadata, rebuilt as new meta tensors. Operators that mutate
their first argument in place without changing its metadata (``uniform_``, ``clamp_``,
``mul_``) are answered with that argument. Anything else (views and other aliasing results,
metadata-changing in-place operators, outputs that are not tensors, arguments that are not meta
tensors) runs as usual. The answers are exactly what the operator returned the first time, so the
shapes every later operator sees, and with them any FLOP count, are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["MetaShapeMemo"]

_META = torch.device("meta")
_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)
_SELF = "self"  # the cached answer of an in-place operator: its first argument, unchanged


class _Uncacheable(Exception):
    pass


def _key(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        if x.device != _META:
            raise _Uncacheable
        return (x.shape, x.stride(), x.dtype)
    if isinstance(x, (list, tuple)):
        return (type(x), *map(_key, x))
    if isinstance(x, _PLAIN):
        return (type(x), x)
    raise _Uncacheable


def _spec(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return ("t", tuple(out.shape), out.stride(), out.dtype) if out.device == _META else None
    if isinstance(out, (tuple, list)):
        parts = [_spec(o) for o in out]
        return None if any(p is None for p in parts) else ("s", type(out), parts)
    return None


def _rebuild(spec: Any) -> Any:
    if spec[0] == "t":
        return torch.empty_strided(spec[1], spec[2], dtype=spec[3], device=_META)
    return spec[1](_rebuild(p) for p in spec[2])


def _layout(t: torch.Tensor) -> tuple:
    return (t.shape, t.stride(), t.storage_offset(), t.dtype)


class MetaShapeMemo(TorchDispatchMode):
    """Answer repeated meta-device operators from a table of their earlier outputs' metadata.

    One instance may serve many models (keys hold only metadata). ``hits`` and ``misses`` count
    the answers from the table and the operators that ran.
    """

    def __init__(self) -> None:
        super().__init__()
        self._table: dict[Any, Any] = {}
        self._functional: dict[Any, bool] = {}
        self.hits = 0
        self.misses = 0

    def _is_functional(self, func: Any) -> bool:
        known = self._functional.get(func)
        if known is None:
            schema = func._schema
            known = (
                not schema.is_mutable
                and len(schema.returns) > 0
                and all(r.alias_info is None for r in schema.returns)
            )
            self._functional[func] = known
        return known

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            key = (func, _key(args), _key(tuple(sorted(kwargs.items()))))
        except _Uncacheable:
            return func(*args, **kwargs)
        answer = self._table.get(key)
        if answer is not None:
            self.hits += 1
            return args[0] if answer is _SELF else _rebuild(answer)
        self.misses += 1
        if self._is_functional(func):
            out = func(*args, **kwargs)
            answer = _spec(out)
        else:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            before = None if first is None else _layout(first)
            out = func(*args, **kwargs)
            unchanged = first is not None and out is first and _layout(first) == before
            answer = _SELF if unchanged else None
        if answer is not None:
            self._table[key] = answer
        return out
