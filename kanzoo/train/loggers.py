"""Metric sinks: JSONL file, Weights & Biases (imported lazily, never prompts for a key)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class Logger:
    """Base metric sink. Only the main process logs; subclasses override the hooks they need."""

    def log(self, metrics: dict[str, float], *, step: int) -> None:
        """Record ``metrics`` at optimizer step ``step``."""

    def log_config(self, config: dict[str, Any]) -> None:
        """Record the run configuration once at start."""

    def truncate_after(self, step: int) -> None:
        """Forget records newer than ``step`` (called when resuming from that step)."""

    def finish(self) -> None:
        """Flush and close."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the information as text
    return value


class JsonlLogger(Logger):
    """Append one JSON object per :meth:`log` call to ``path`` (``{"step": ..., **metrics}``).

    Args:
        path: Output file (parent directories are created).
    """

    def __init__(self, *, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def _open(self):
        if self._file is None:
            self._file = open(self.path, "a", buffering=1)
        return self._file

    def log(self, metrics: dict[str, float], *, step: int) -> None:
        record = {"step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
        self._open().write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        # Records written after the checkpoint we resume from would be duplicated otherwise.
        if not self.path.exists():
            return
        kept = []
        with open(self.path) as f:
            for line in f:
                try:
                    if json.loads(line).get("step", 0) <= step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
        if self._file is not None:
            self._file.close()
            self._file = None
        tmp = self.path.parent / f".{self.path.name}.tmp"
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL metrics file (skipping a truncated last line)."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class WandbLogger(Logger):
    """Weights & Biases run. Offline unless the user configured online use.

    ``mode=None`` resolves to ``$WANDB_MODE`` when set, else ``"online"`` only when an API key is
    configured (``WANDB_API_KEY`` or a ``~/.netrc`` entry for api.wandb.ai), else ``"offline"``.
    It never prompts: wandb is told not to ask for a login.

    Args:
        project: W&B project name.
        name: Run name (defaults to the run directory's name).
        entity: W&B entity/team.
        mode: ``"online"``, ``"offline"``, ``"disabled"`` or None (auto, see above).
        dir: Directory for wandb's local files (defaults to the run directory).
        tags: Run tags.
        run_dir: The trainer's run directory (filled in by the entry point).
    """

    def __init__(
        self,
        *,
        project: str = "kanzoo",
        name: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | None = None,
        tags: list[str] | None = None,
        run_dir: str | None = None,
    ) -> None:
        self.project, self.name, self.entity, self.tags = project, name, entity, list(tags or [])
        self.mode = mode or _default_wandb_mode()
        self.dir = dir or run_dir
        self.run_dir = run_dir
        self._run = None

    def _start(self, config: dict[str, Any] | None = None):
        if self._run is None:
            try:
                import wandb
            except ImportError as err:
                raise ImportError(
                    "logger=wandb needs the wandb package: pip install 'kanzoo[wandb]'"
                ) from err
            os.environ.setdefault("WANDB_SILENT", "true")
            if self.dir:
                Path(self.dir).mkdir(parents=True, exist_ok=True)
            name = self.name or (Path(self.run_dir).name if self.run_dir else None)
            self._run = wandb.init(
                project=self.project,
                name=name,
                entity=self.entity,
                mode=self.mode,
                dir=self.dir,
                tags=self.tags,
                config=config,
                settings=wandb.Settings(silent=True),
                reinit="finish_previous",
            )
        return self._run

    def log_config(self, config: dict[str, Any]) -> None:
        self._start(config)

    def log(self, metrics: dict[str, float], *, step: int) -> None:
        self._start().log(dict(metrics), step=int(step))

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def _default_wandb_mode() -> str:
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    try:
        if netrc.is_file() and "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


LOGGERS = {"jsonl": JsonlLogger, "wandb": WandbLogger}


def build_loggers(
    spec: dict[str, dict[str, Any] | None] | None, *, run_dir: str | os.PathLike
) -> list[Logger]:
    """Loggers from a ``{kind: kwargs}`` mapping (``{}``/None: none).

    ``jsonl`` defaults its ``path`` to ``<run_dir>/metrics.jsonl``; ``wandb`` gets ``run_dir``.
    Unknown kinds raise a ValueError listing the available ones.
    """
    loggers: list[Logger] = []
    for kind, kwargs in (spec or {}).items():
        kwargs = dict(kwargs or {})
        if kind not in LOGGERS:
            raise ValueError(f"unknown logger {kind!r}; available: {', '.join(sorted(LOGGERS))}, or none")
        if kind == "jsonl":
            if kwargs.get("path") is None:
                kwargs["path"] = Path(run_dir) / "metrics.jsonl"
        elif kind == "wandb":
            kwargs["run_dir"] = str(run_dir)
        loggers.append(LOGGERS[kind](**kwargs))
    return loggers
