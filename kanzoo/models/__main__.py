"""Print the model table: ``python -m kanzoo.models [PATTERN] [--markdown] [--real]``.

For every registered model: task, parameter count and forward FLOPs for one sample at the
model's default input (an image of its ``input_size``; a full-context token sequence for language
models), counted with ``torch.utils.flop_counter.FlopCounterMode``. FLOPs cover matmuls,
convolutions and attention (2 per multiply-add); the elementwise basis evaluation of KAN layers
is not included (it is ``O(N * in * n)`` against the ``O(N * in * out * n)`` matmul).

Models are built and run on the meta device (shapes only: no memory, no arithmetic), which takes
well under a second per model. A model whose construction or forward does not support the meta
device is built for real on the CPU instead (its forward runs on uninitialised weights where only
the forward failed on meta): the numbers are the same, only slower. ``--real`` builds every model
for real (the reference the meta path is tested against). On the meta device, repeated operators
are answered from a table of their earlier output shapes (:mod:`kanzoo.models._meta_memo`), which
changes no count.

Rows are cached on disk (:mod:`kanzoo.models._table_cache`, ``$KANZOO_CACHE/model_table.json``),
keyed by the kanzoo source files and the torch/timm/transformers versions: while nothing changed,
the table prints without importing torch or any model; after an edit, only the rows whose code
changed are measured again. ``--no-cache`` measures every row again (and rewrites the cache).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from typing import Any

os.environ.setdefault("KANZOO_COMPILE", "0")  # counting FLOPs needs eager kernels

from kanzoo.models._table_cache import TableCache  # noqa: E402  (standard library only)

# torch and the model code are imported on first use, so a cached table prints without them.


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_flops() -> dict:
    """The CPU attention kernel has no flop formula in torch (the meta device decomposes attention
    into counted matmuls instead): count it the way torch counts the CUDA kernels, so both paths
    agree."""
    import torch

    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


_MEMO = None  # one MetaShapeMemo for the whole process (its keys hold only metadata)


def _memo():
    global _MEMO
    if _MEMO is None:
        from kanzoo.models._meta_memo import MetaShapeMemo

        _MEMO = MetaShapeMemo()
    return _MEMO


def _example_input(name: str, model: Any) -> tuple[Any, str]:
    """One sample at the model's default input size, on the current default device."""
    import torch

    from kanzoo.models import model_info

    info = model_info(name)
    if info["task"] == "lm":
        cfg = model.config
        length = int(
            getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 128
        )
        vocab = int(getattr(cfg, "vocab_size", 256))
        return torch.randint(0, vocab, (1, length)), f"{length} tokens"
    size = info.get("input_size")
    if size is None:
        cfg = getattr(model, "config", None)
        s = int(getattr(cfg, "img_size", 32))
        size = (int(getattr(cfg, "in_chans", 3)), s, s)
    return torch.randn(1, *size), "x".join(str(v) for v in size)


def _forward_flops(name: str, model: Any, device: str) -> tuple[int, str]:
    import contextlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        x, described = _example_input(name, model)
    counter = FlopCounterMode(display=False, custom_mapping=_custom_flops())
    memo = _memo() if device == "meta" else contextlib.nullcontext()
    with torch.no_grad(), memo, counter:  # the counter sees every operator; the memo answers below it
        model(x)
    return counter.get_total_flops(), described


def _build(name: str, device: str) -> Any:
    import contextlib

    import torch

    from kanzoo.models import create_model

    torch.manual_seed(0)
    memo = _memo() if device == "meta" else contextlib.nullcontext()
    with torch.device(device), memo:
        return create_model(name).eval()


def measure(name: str, *, real: bool = False, fallback: bool = True) -> tuple[int, int, str, str]:
    """``(parameters, FLOPs, input description, how)`` of one model; ``how`` is ``"meta"``,
    ``"meta+cpu forward"`` or ``"cpu"`` (see the module docstring).

    Args:
        name: A registered model.
        real: Build and run it for real on the CPU (the reference).
        fallback: Where the meta device fails, fall back to the CPU; if False, raise instead.
    """
    import torch

    from kanzoo.models import count_parameters

    if not real:
        try:
            model = _build(name, "meta")
        except Exception:  # construction not meta-safe (e.g. an init-time fit): build for real
            if not fallback:
                raise
        else:
            params = count_parameters(model)
            try:
                flops, described = _forward_flops(name, model, "meta")
                return params, flops, described, "meta"
            except Exception:  # forward not meta-safe: same shapes on the CPU, weights zeroed
                if not fallback:
                    raise
                model = model.to_empty(device="cpu")
                with torch.no_grad():
                    for tensor in (*model.parameters(), *model.buffers()):
                        tensor.zero_()
                flops, described = _forward_flops(name, model, "cpu")
                return params, flops, described, "meta+cpu forward"
    model = _build(name, "cpu")
    flops, described = _forward_flops(name, model, "cpu")
    return count_parameters(model), flops, described, "cpu"


def model_row(
    name: str, *, real: bool = False, measured: tuple[int, int, str, str] | None = None
) -> dict[str, Any]:
    """Task, parameter count, input description and forward FLOPs per sample of one model.

    ``measured`` is a result of :func:`measure` to use instead of measuring again.
    """
    from kanzoo.models import model_info

    params, flops, described, how = measured or measure(name, real=real)
    info = model_info(name)
    return {
        "name": name,
        "task": info["task"],
        "twin_of": info["twin_of"] or "",
        "params": params,
        "input": described,
        "flops": flops,
        "how": how,
    }


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """Render rows from :func:`model_row` as plain text or a Markdown table."""
    header = ["model", "task", "twin of", "params", "input", "FLOPs/sample"]
    body = [
        [r["name"], r["task"], r["twin_of"], _human(r["params"]), r["input"], _human(r["flops"])]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kanzoo.models",
        description="Print the registered models with their task, twin, parameters and FLOPs per sample.",
        epilog="Example: python -m kanzoo.models 'kan_*' --markdown",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern over model names")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's)")
    parser.add_argument(
        "--real", action="store_true", help="build every model for real on the CPU (slow; same numbers)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="measure every row again (the cache file is rewritten)"
    )
    return parser


def table_rows(pattern: str = "*", *, use_cache: bool = True, cache: TableCache | None = None) -> list[dict]:
    """The rows of :func:`model_row` for the models matching ``pattern``, from the cache where valid.

    Args:
        pattern: ``fnmatch`` pattern over model names.
        use_cache: Read rows from the cache (they are written to it either way).
        cache: The cache to use (default: the file of :func:`kanzoo.models._table_cache.cache_file`).
    """
    import kanzoo.models as models

    cache = cache if cache is not None else TableCache(families=models.FAMILY_MODULES)
    if use_cache:
        rows = cache.table(pattern)
        if rows is not None:
            return rows
    models.import_families()  # deferred under ``python -m kanzoo.models`` (see its __init__)
    everything = models.list_models()
    keys = {n: cache.row_key(models.model_info(n)["module"]) for n in everything}
    rows = []
    for name in everything:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        row = cache.row(name, keys[name]) if use_cache else None
        if row is None:
            import torch

            torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
            row = model_row(name)
            cache.put(name, keys[name], row)
        rows.append(row)
    cache.save(everything, keys)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.real:
        import torch

        from kanzoo.models import import_families, list_models

        import_families()
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
        rows = [model_row(n, real=True) for n in list_models(args.pattern)]
    else:
        rows = table_rows(args.pattern, use_cache=not args.no_cache)
    if not rows:
        print(f"error: no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(rows, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    from kanzoo._cli import run_main

    sys.exit(run_main(main))
