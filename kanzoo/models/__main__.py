"""Print the model table: ``python -m kanzoo.models [PATTERN] [--markdown]``.

For every registered model: task, parameter count and forward FLOPs for one sample at the
model's default input (an image of its ``input_size``; a full-context token sequence for language
models), counted with ``torch.utils.flop_counter.FlopCounterMode``. FLOPs cover matmuls,
convolutions and attention (2 per multiply-add); the elementwise basis evaluation of KAN layers
is not included (it is ``O(N * in * n)`` against the ``O(N * in * out * n)`` matmul).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("KANZOO_COMPILE", "0")  # counting FLOPs needs eager kernels

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from kanzoo.models import count_parameters, create_model, list_models, model_info  # noqa: E402


def _example_input(name: str, model: torch.nn.Module) -> tuple[torch.Tensor, str]:
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


def model_row(name: str) -> dict[str, Any]:
    """Task, parameter count, input description and forward FLOPs per sample of one model."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    x, described = _example_input(name, model)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    info = model_info(name)
    return {
        "name": name,
        "task": info["task"],
        "twin_of": info["twin_of"] or "",
        "params": count_parameters(model),
        "input": described,
        "flops": counter.get_total_flops(),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanzoo.models", description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern over model names")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    names = list_models(args.pattern)
    if not names:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    print(format_table([model_row(n) for n in names], markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
