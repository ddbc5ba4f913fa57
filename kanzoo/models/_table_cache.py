"""The on-disk cache of ``python -m kanzoo.models``: one row per model, keyed by the code that made it.

The file is ``model_table.json`` in ``$KANZOO_CACHE`` (default ``~/.cache/kanzoo``). A row's key is
a hash of the versions of torch, torchvision, timm and transformers, of every kanzoo source file
except the model-family modules, and of the family modules its model comes from (its own and the
families that module imports). Editing one family therefore recomputes that family's rows only;
editing anything shared (a layer, the counting code in ``__main__``) recomputes every row. The
table as a whole also has a key (every source file and the versions): when it matches, the table
is printed without importing torch or any model code.

A missing, unreadable or corrupt file is ignored (the table is recomputed and the file rewritten);
the file is written through a temporary file and a rename, so a reader never sees half of one, and
a cache folder that cannot be written is skipped silently.

This module imports only the standard library.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["TableCache", "cache_file"]

FORMAT = 1
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../kanzoo
_VERSIONED = ("torch", "torchvision", "timm", "transformers")
_ROW_FIELDS = {"name", "task", "twin_of", "params", "input", "flops", "how"}


def cache_file() -> Path:
    """``$KANZOO_CACHE/model_table.json`` (default ``~/.cache/kanzoo/model_table.json``)."""
    root = os.environ.get("KANZOO_CACHE") or str(Path.home() / ".cache" / "kanzoo")
    return Path(root) / "model_table.json"


def _versions() -> list[str]:
    out = [f"python {sys.version_info[0]}.{sys.version_info[1]}"]
    for dist in _VERSIONED:
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist} -")
    return out


def _source_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every ``.py`` file of the package."""
    hashes = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            hashes[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _family_imports(path: Path, families: set[str]) -> set[str]:
    """The family modules (names in ``families``) that the module at ``path`` imports."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return set(families)  # unknown: depend on all of them
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .kan_vit import X / from . import kan_vit
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.level == 0 and node.module == "kanzoo.models":
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and (node.module or "").startswith("kanzoo.models."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kanzoo.models."):
                    found.add(alias.name.split(".")[2])
    return found & families


class TableCache:
    """Rows of the model table from the last runs, and the keys they are valid under.

    Args:
        path: The cache file (default :func:`cache_file`).
        families: The family module names (``kanzoo.models.FAMILY_MODULES``); every other source
            file is shared by all models.
    """

    def __init__(self, *, path: Path | None = None, families: tuple[str, ...] | list[str] = ()) -> None:
        self.path = Path(path) if path is not None else cache_file()
        self.families = set(families)
        self._hashes = _source_hashes(_PACKAGE_ROOT)
        self._versions = _versions()
        self.table_key = _digest([f"format {FORMAT}", *self._versions, *map(":".join, self._hashes.items())])
        self._shared: str | None = None
        self._row_keys: dict[str, str] = {}
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"format": FORMAT, "table_key": None, "names": [], "rows": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return empty
        try:
            if data["format"] != FORMAT or not isinstance(data["rows"], dict):
                return empty
            names = [str(n) for n in data["names"]]
            rows = {
                str(name): {"key": str(entry["key"]), "row": dict(entry["row"])}
                for name, entry in data["rows"].items()
                if _ROW_FIELDS <= set(entry["row"])
            }
            table_key = data["table_key"]
        except (KeyError, TypeError, ValueError, AttributeError):
            return empty
        return {"format": FORMAT, "table_key": table_key, "names": names, "rows": rows}

    def table(self, pattern: str = "*") -> list[dict[str, Any]] | None:
        """The rows matching ``pattern`` (sorted by name, as ``list_models``), if the whole cached
        table is valid for the current code; else None."""
        data = self._data
        if data["table_key"] != self.table_key or not all(n in data["rows"] for n in data["names"]):
            return None
        return [data["rows"][n]["row"] for n in sorted(data["names"]) if fnmatch.fnmatchcase(n, pattern)]

    def row_key(self, module: str) -> str:
        """The key of a row whose model is defined in the module named ``module``."""
        if module in self._row_keys:
            return self._row_keys[module]
        if self._shared is None:
            family_files = {f"models/{f}.py" for f in self.families}
            shared = [f"{p}:{h}" for p, h in self._hashes.items() if p not in family_files]
            self._shared = _digest([f"format {FORMAT}", *self._versions, *shared])
        own = module.rsplit(".", 1)[-1] if module.startswith("kanzoo.models.") else None
        if own in self.families:
            deps, todo = {own}, [own]
            while todo:  # family modules imported by the model's module, transitively
                for dep in _family_imports(_PACKAGE_ROOT / "models" / f"{todo.pop()}.py", self.families):
                    if dep not in deps:
                        deps.add(dep)
                        todo.append(dep)
        else:  # defined elsewhere: depends on every family module
            deps = set(self.families)
        parts = [self._shared, module]
        parts += [f"{d}:{self._hashes.get(f'models/{d}.py', '-')}" for d in sorted(deps)]
        self._row_keys[module] = _digest(parts)
        return self._row_keys[module]

    def row(self, name: str, key: str) -> dict[str, Any] | None:
        """The cached row of ``name`` if it was made under ``key``."""
        entry = self._data["rows"].get(name)
        return dict(entry["row"]) if entry is not None and entry["key"] == key else None

    def put(self, name: str, key: str, row: dict[str, Any]) -> None:
        self._data["rows"][name] = {"key": key, "row": dict(row)}

    def save(self, names: list[str], keys: dict[str, str]) -> None:
        """Write the file: ``names`` is the whole registry and ``keys`` each name's current row key.

        Rows of models no longer registered are dropped; the table key is recorded only when every
        registered model has a row under its current key.
        """
        rows = {n: e for n, e in self._data["rows"].items() if n in keys}
        complete = all(n in rows and rows[n]["key"] == keys[n] for n in names)
        table_key = self.table_key if complete else None
        data = {"format": FORMAT, "table_key": table_key, "names": names, "rows": rows}
        self._data = data
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a read-only or missing cache folder: the table is still printed
