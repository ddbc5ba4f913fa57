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

    def start(self, history: list[dict[str, Any]], *, new: bool) -> None:
        """Called once before training with the records the run already has.

        Args:
            history: Records (``{"step": ..., **metrics}``) of the checkpoint the run resumes
                from (empty for a fresh run); a sink that keeps a file rewrites it to these.
            new: The run directory must not hold records of another run (a fresh run).
        """

    def finish(self) -> None:
        """Flush and close."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the information as text
    return value


class JsonlLogger(Logger):
    """One JSON object per :meth:`log` call in ``path`` (``{"step": ..., **metrics}``).

    :meth:`start` decides what the file holds before the first record: a fresh run refuses a
    ``path`` that already holds records (it never appends to another run's metrics); a resumed
    run rewrites it to the checkpoint's history, so records logged after that checkpoint (and a
    line cut by a kill) are not duplicated. Nothing is created before the first write.

    Args:
        path: Output file (parent directories are created on the first write).
    """

    def __init__(self, *, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = None

    def _open(self):
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        return self._file

    @staticmethod
    def _line(record: dict[str, Any]) -> str:
        return json.dumps({k: _clean(v) for k, v in record.items()}) + "\n"

    def log(self, metrics: dict[str, float], *, step: int) -> None:
        try:
            self._open().write(self._line({"step": int(step), **metrics}))
        except OSError as err:  # a full disk: name the file
            raise OSError(err.errno, f"cannot write {self.path}: {err.strerror or err}") from None

    def start(self, history: list[dict[str, Any]], *, new: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if new and exists:
            raise FileExistsError(
                f"{self.path} already holds metrics of another run; a new run does not append to them: "
                "choose a new run_dir (or pass trainer.resume=auto to continue that run)"
            )
        if not exists and not history:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.tmp"
        tmp.write_text("".join(self._line(r) for r in history))
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


#: Settings of each logger kind: (kind, rule) as in :func:`kanzoo.train.config.check_value`.
LOGGER_SETTINGS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "jsonl": {"path": ("str", {"none": True})},
    "wandb": {
        "project": ("str", {}),
        "name": ("str", {"none": True}),
        "entity": ("str", {"none": True}),
        "mode": ("str", {"none": True, "choices": ("online", "offline", "disabled")}),
        "dir": ("str", {"none": True}),
        "tags": ("strlist", {"none": True}),
    },
}


def check_logger_spec(spec: Any) -> dict[str, dict[str, Any]]:
    """Validate a ``{kind: kwargs}`` logger mapping; returns it with checked values.

    Raises:
        ValueError: an unknown kind or setting (with a suggestion) or a bad value, naming it.
    """
    from .config import SettingError, check_value, suggest

    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise SettingError(f"logger must be a mapping of logger kind: settings, got {spec!r:.60}")
    checked = {}
    for kind, kwargs in spec.items():
        if kind not in LOGGERS:
            raise SettingError(
                f"unknown logger {kind!r}{suggest(kind, list(LOGGERS))}; "
                f"available: {', '.join(sorted(LOGGERS))}, or none"
            )
        if kwargs is not None and not isinstance(kwargs, dict):
            raise SettingError(f"logger.{kind} must be a mapping of settings, got {kwargs!r:.60}")
        allowed = LOGGER_SETTINGS[kind]
        out = {}
        for key, value in (kwargs or {}).items():
            if key not in allowed:
                raise SettingError(
                    f"unknown logger.{kind} setting {key!r}{suggest(key, list(allowed))}; "
                    f"known: {', '.join(allowed)}"
                )
            what, rule = allowed[key]
            out[key] = check_value(f"logger.{kind}.{key}", value, what, **rule)
        checked[kind] = out
    return checked


def build_loggers(
    spec: dict[str, dict[str, Any] | None] | None, *, run_dir: str | os.PathLike
) -> list[Logger]:
    """Loggers from a ``{kind: kwargs}`` mapping (``{}``/None: none).

    ``jsonl`` defaults its ``path`` to ``<run_dir>/metrics.jsonl``; ``wandb`` gets ``run_dir``.
    Unknown kinds or settings and bad values raise a one-line ValueError naming them.
    """
    loggers: list[Logger] = []
    for kind, kwargs in check_logger_spec(spec).items():
        kwargs = dict(kwargs or {})
        if kind == "jsonl":
            if kwargs.get("path") is None:
                kwargs["path"] = Path(run_dir) / "metrics.jsonl"
        elif kind == "wandb":
            kwargs["run_dir"] = str(run_dir)
        loggers.append(LOGGERS[kind](**kwargs))
    return loggers
