"""Atomic checkpoint directories: write into a temporary sibling, then rename into place.

A checkpoint directory ``<root>/step_XXXXX`` only ever appears complete: everything is written
into ``<root>/.tmp-step_XXXXX`` (made by :func:`stage`) and the directory is renamed once its
completion marker (:data:`STATE_FILE`) is in place. A run killed mid-save leaves only a ``.tmp-*``
(or, while replacing, an ``.old-*``) directory, which :func:`list_checkpoints` ignores.

The trainer deletes only what it created: every staging directory carries an :data:`OWNER_FILE`
marker from its creation until it is published, and :func:`remove_stale_tmp` deletes a
``.tmp-<name>``/``.old-<name>`` entry only for the names the trainer writes and only if the marker is
inside. A user's ``.tmp-notes/`` or an unmarked ``.old-final/`` is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

#: Completion marker written last into every resumable checkpoint (trainer step, data position).
STATE_FILE = "trainer_state.json"
#: Marker inside every staging directory the trainer creates (removed once it is published).
OWNER_FILE = ".kanzoo-staging"
_NAME = re.compile(r"^step_(\d+)$")


class NotOursError(FileExistsError):
    """A path the trainer would write holds something the trainer did not create."""


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after optimizer step ``step`` (``step_00042``)."""
    return f"step_{step:05d}"


def tmp_path(final: str | os.PathLike) -> Path:
    """Temporary sibling into which ``final`` is written before the rename."""
    final = Path(final)
    return final.parent / f".tmp-{final.name}"


def stage(final: str | os.PathLike) -> Path:
    """A fresh, marked staging directory for ``final`` (an earlier one of ours is replaced).

    Raises:
        FileExistsError: the staging path exists but was not created by the trainer.
    """
    tmp = tmp_path(final)
    if tmp.exists() or tmp.is_symlink():
        if not is_ours(tmp):
            raise NotOursError(
                f"{tmp} exists and was not created by kanzoo's trainer; move it away (it is not deleted)"
            )
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return tmp


def is_ours(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a real directory holding the trainer's :data:`OWNER_FILE` marker."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / OWNER_FILE).is_file()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full or read-only disk: name the file
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None


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
    if final.exists() or final.is_symlink():
        old = final.parent / f".old-{final.name}"
        if old.exists() or old.is_symlink():
            if not is_ours(old):
                raise NotOursError(
                    f"{old} exists and was not created by kanzoo's trainer; move it away (it is not deleted)"
                )
            shutil.rmtree(old)
        if final.is_dir() and not final.is_symlink():
            # marked first, so a crash between the renames leaves an .old- dir that is known to be ours
            (final / OWNER_FILE).write_text(f"{os.getpid()}\n")
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    (final / OWNER_FILE).unlink(missing_ok=True)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
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


def remove_stale_tmp(root: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the trainer's ``.tmp-<name>``/``.old-<name>`` leftovers of an interrupted save.

    Only entries whose ``<name>`` is in ``names`` (None: checkpoint names ``step_N``) and that
    carry the :data:`OWNER_FILE` marker are deleted; returns them.

    Raises:
        NotOursError: such an entry exists without the marker (the trainer would need its name).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for child in root.iterdir():
        for prefix in (".tmp-", ".old-"):
            if not child.name.startswith(prefix):
                continue
            name = child.name[len(prefix) :]
            known = _NAME.match(name) if names is None else name in names
            if not known:
                continue
            if not is_ours(child):
                raise NotOursError(
                    f"{child} exists and was not created by kanzoo's trainer, which needs that name; "
                    "move it away (it is not deleted)"
                )
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer state stored in checkpoint ``path``; clear errors for a missing/incomplete dir."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"{path} is not a complete kanzoo checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(state_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{state_file} is corrupt ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(
        isinstance(state.get(k), int) and not isinstance(state.get(k), bool) and state[k] >= 0
        for k in ("step", "epoch", "epoch_samples", "samples_seen")
    ):
        raise ValueError(f"{state_file} is not a kanzoo trainer state (step/epoch counters missing)")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(r, dict) and isinstance(r.get("step", 0), int) for r in history
    ):
        raise ValueError(f"{state_file} is not a kanzoo trainer state (its history is not a list of records)")
    for key in ("world_size", "steps_acc"):
        value = state.get(key, 1 if key == "world_size" else 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "world_size" else 0):
            raise ValueError(f"{state_file} is not a kanzoo trainer state ({key} is {value!r:.40})")
    for key in ("elapsed_s", "best"):
        value = state.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{state_file} is not a kanzoo trainer state ({key} is {value!r:.40})")
    return state
