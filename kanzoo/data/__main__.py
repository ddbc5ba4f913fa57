"""``python -m kanzoo.data [NAME [key=value ...]]``: list datasets, or build one and describe it.

A problem with the name or a setting prints one ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import ast
import sys

from kanzoo._cli import UserInputError, run_main

USAGE = """\
usage: python -m kanzoo.data [-h] [list | NAME [key=value ...]]

Without arguments (or with `list`), list the registered datasets. With a NAME, build that dataset
with the given keyword arguments (values are Python literals when they parse, strings otherwise)
and print its splits and one training item.

examples:
  python -m kanzoo.data nuclei tile_size=128
  python -m kanzoo.data text path_or_hub_name=corpus.txt tokenizer=bpe"""


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _print_datasets() -> None:
    from . import list_datasets

    print("datasets (python -m kanzoo.data NAME key=value ... builds one):")
    for name, desc in list_datasets(with_descriptions=True).items():
        print(f"  {name:<20} {desc}")


def main(argv: list[str] | None = None) -> int:
    from . import build_data

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE + "\n")
        _print_datasets()
        return 0
    if not args or args[0] == "list":
        _print_datasets()
        return 0
    kwargs = {}
    for a in args[1:]:
        if "=" not in a:
            raise UserInputError(f"arguments after the name must be key=value, got {a!r}")
        k, v = a.split("=", 1)
        kwargs[k] = _value(v)
    dm = build_data(args[0], **kwargs)
    print(dm)
    item = dm.train[0]
    for k, v in item.items():
        print(f"  {k}: {tuple(v.shape) if hasattr(v, 'shape') else v!r} {getattr(v, 'dtype', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
