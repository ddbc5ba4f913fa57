"""Convert a peer's checkpoint into a kanzoo checkpoint directory (safetensors + JSON config).

    python -m kanzoo.convert kat kat_tiny_patch16_224.pth out/kat_tiny
    python -m kanzoo.convert ukan busi/model.pth out/ukan_busi num_classes=1
    python -m kanzoo.convert kan_gpt model.pt out/kan_gpt n_head=6

Options after the output directory are ``key=value`` keyword arguments of the importer
(``from_kat``, ``from_ukan``, ``from_kan_gpt``); values are read as Python literals when they parse
(``3``, ``1e-5``, ``True``, ``[256, 320, 512]``) and as strings otherwise. The written directory
loads with ``kanzoo.from_pretrained(out_dir)`` and scores with ``python evaluate.py checkpoint=out_dir``.
The output directory must not exist yet (nothing is overwritten, nothing is left behind on a
failure). ``allow_nonfinite=True`` imports NaN/inf weights, refused by default. A problem with the
input prints one ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import shutil
import sys
from pathlib import Path
from typing import Any

IMPORTERS = {
    "kan_gpt": ("kanzoo.convert.kan_gpt", "from_kan_gpt"),
    "ukan": ("kanzoo.convert.ukan", "from_ukan"),
    "kat": ("kanzoo.convert.kat", "from_kat"),
}


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; raises ValueError on an item without ``=``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"options are key=value with a Python identifier as key, got {item!r}")
        out[key] = _value(value)
    return out


def convert(kind: str, source: str | Path, out_dir: str | Path, **options: Any) -> Path:
    """Import ``source`` with the ``kind`` importer and save it to the new directory ``out_dir``."""
    if kind not in IMPORTERS:
        raise ValueError(f"unknown importer {kind!r}; choose one of {sorted(IMPORTERS)}")
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new output directory")
    if not Path(source).is_file():
        raise FileNotFoundError(f"checkpoint file not found: {source}")
    module, name = IMPORTERS[kind]
    importer = getattr(importlib.import_module(module), name)
    try:
        inspect.signature(importer).bind(source, **options)
    except TypeError:
        known = [p for p in inspect.signature(importer).parameters if p != "source"]
        unknown = sorted(set(options) - set(known))
        raise ValueError(f"unknown option(s) {unknown} for {kind}; {name} accepts {known}") from None
    model = importer(source, **options)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        from kanzoo._cli import exit_with_error

        exit_with_error(f"{message} (usage: {self.prog} KIND SOURCE OUT_DIR [key=value ...])")


def main(argv: list[str] | None = None) -> int:
    """Run the converter; user errors raise (``run_main`` turns them into one line and exit 2)."""
    parser = _Parser(
        prog="python -m kanzoo.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=sorted(IMPORTERS), help="which peer wrote the checkpoint")
    parser.add_argument("source", help="the peer's checkpoint file (.pth/.pt/.bin/.safetensors)")
    parser.add_argument("out_dir", help="new directory for the kanzoo checkpoint")
    parser.add_argument("options", nargs="*", help="importer keyword arguments as key=value")
    args = parser.parse_args(argv)
    out = convert(args.kind, args.source, args.out_dir, **parse_options(args.options))
    print(f"wrote {out} (load with kanzoo.from_pretrained({str(out)!r}))")
    return 0


if __name__ == "__main__":
    from kanzoo._cli import run_main

    sys.exit(run_main(main))
