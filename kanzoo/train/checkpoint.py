"""Atomic checkpoint directories: write into a temporary sibling, then rename into place.

A checkpoint directory ``<root>/step_XXXXX`` only ever appears complete: everything is written
into ``<root>/.tmp-step_XXXXX`` and the directory is renamed once its completion marker
(:data:`STATE_FILE`) is in place. A run killed mid-save leaves only a ``.tmp-*`` directory, which
:func:`list_checkpoints` ignores and :func:`remove_stale_tmp` deletes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

#: Completion marker written last into every resumable checkpoint (trainer step, data position).
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after optimizer step ``step`` (``step_00042``)."""
    return f"step_{step:05d}"


def tmp_path(final: str | os.PathLike) -> Path:
    """Temporary sibling into which ``final`` is written before the rename."""
    final = Path(final)
    return final.parent / f".tmp-{final.name}"


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the finished directory ``tmp`` to ``final``, replacing an existing ``final``.

    An existing ``final`` is first renamed aside and deleted only after the new one is in place,
    so a crash at any point leaves either the old or the new directory under ``final``'s name
    (or, between the two renames, the old one under a ``.old-`` name and the newest earlier step).
    """
    tmp, final = Path(tmp), Path(final)
    if not tmp.is_dir():
        raise FileNotFoundError(f"checkpoint staging directory {tmp} does not exist")
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished checkpoint directory (named ``step_N`` with its marker)."""
    path = Path(path)
    return bool(_NAME.match(path.name)) and (path / STATE_FILE).is_file()


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """Newest complete checkpoint under ``root`` or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune(root: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest complete checkpoints; returns the deleted paths."""
    found = list_checkpoints(root)
    doomed = [path for _, path in found[: max(0, len(found) - keep)]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_stale_tmp(root: str | os.PathLike) -> None:
    """Delete ``.tmp-*``/``.old-*`` leftovers of an interrupted save."""
    root = Path(root)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".old-")):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer state stored in checkpoint ``path``; clear errors for a missing/incomplete dir."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"{path} is not a complete kanzoo checkpoint (no {STATE_FILE})")
    with open(state_file) as f:
        return json.load(f)
