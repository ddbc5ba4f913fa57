"""What a run leaves behind: the from_pretrained model, the summary, the ``latest`` link, and a
clear account of a save that the storage refused."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from .plots import plot_loss_curve
from .runguard import RunDirBusyError, RunDirLock, describe_previous

SUMMARY_FILE = "train_summary.json"


class CheckpointWriteError(OSError):
    """The storage refused a checkpoint or the final model (disk full, read-only, ...)."""


class RunDirError(OSError):
    """The run directory cannot be created or used."""


def _mkdirs(path: Path) -> list[Path]:
    """``mkdir -p`` returning the directories it created (outermost first)."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create run_dir {path}: {err.strerror or err}") from None
    if not path.is_dir():
        raise RunDirError(f"run_dir {path} is not a directory")
    return missing[::-1]


@contextlib.contextmanager
def quiet_hf_progress():
    """Silence transformers' "Writing model shards" bars while the trainer saves a model."""
    hf = sys.modules.get("transformers.utils.logging")
    enabled = hf is not None and hf.is_progress_bar_enabled()
    if enabled:
        hf.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf.enable_progress_bar()


def storage_reason(err: BaseException) -> str | None:
    """The storage problem behind ``err`` ("No space left on device", ...), or None if it is not one.

    safetensors reports I/O failures as its own error type with the OS message inside.
    """
    from .checkpoint import NotOursError

    if isinstance(err, (NotOursError, RunDirError)):
        return None
    if isinstance(err, OSError):
        return err.strerror or str(err) or type(err).__name__
    text = str(err)
    if type(err).__name__ == "SafetensorError" and ("IoError" in text or "Os {" in text):
        found = re.search(r'message: "([^"]+)"', text)
        return found.group(1) if found else " ".join(text.split())[:120]
    return None


def save_pretrained(acc, module: nn.Module, prepared: nn.Module, directory: Path, *, fsdp: bool) -> None:
    """Write the model in from_pretrained format (collective: all processes must call it)."""
    # FSDP shards parameters: gather a full state dict (every process takes part).
    state_dict = acc.get_state_dict(prepared) if fsdp else None
    if not acc.is_main_process:
        return
    directory.mkdir(parents=True, exist_ok=True)
    save = getattr(module, "save_pretrained", None)
    if callable(save) and state_dict is None:
        with quiet_hf_progress():
            save(str(directory))
        return
    from safetensors.torch import save_file

    if state_dict is None:
        state_dict = module.state_dict()
    config = getattr(module, "config", None)
    if hasattr(config, "save_pretrained"):  # transformers PretrainedConfig
        config.save_pretrained(str(directory))
    elif hasattr(config, "to_dict"):  # kanzoo dataclass configs
        payload = {"kanzoo_model": getattr(module, "kanzoo_model", None), **config.to_dict()}
        (directory / "config.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    # Clone so tied/shared tensors serialize independently.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


def rescue_model(module: nn.Module, name: str) -> str:
    """After the final save failed: write the model to the temp dir; returns a sentence for the error."""
    from safetensors.torch import save_file

    try:
        safe = re.sub(r"[^-\w]", "_", name)
        target = Path(tempfile.mkdtemp(prefix=f"kanzoo-rescue-{safe}-"))
        if callable(getattr(module, "save_pretrained", None)):
            with quiet_hf_progress():
                module.save_pretrained(str(target))
        else:
            state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
            save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    except Exception as err:  # the rescue is best effort; the error message says it failed
        why = storage_reason(err) or type(err).__name__
        return f"saving them to the temp dir failed too ({why}): the trained weights are lost"
    return f"the trained weights were saved to {target} instead (copy them before the temp dir is cleared)"


def is_finished(final_dir: Path, steps: int) -> bool:
    """Whether ``final_dir`` holds a complete run of ``steps`` steps (its summary is written last)."""
    try:
        summary = json.loads((final_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("steps") == steps


def run_summary(trainer: Any, metrics: dict[str, float]) -> dict[str, Any]:
    from dataclasses import asdict

    t = trainer
    train_losses = [r["loss"] for r in t.history if "loss" in r]
    return {
        "model": t.name,
        "task": t.task.name,
        "steps": t.step,
        "samples_seen": t.samples_seen,
        "epochs": t.epoch + t.epoch_samples / max(len(t.data.train), 1),
        "num_parameters": sum(p.numel() for p in t._module.parameters()),
        "num_processes": t.acc.num_processes,
        "device": t.acc.device.type,
        "mixed_precision": t.acc.mixed_precision,
        "train_time_s": round(t._elapsed(), 2),
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_metrics": metrics,
        "monitor": t.task.monitor,
        "best": t.best,
        "trainer": asdict(t.config),
        "optim": asdict(t.optim_config),
        "schedule": asdict(t.schedule_config),
        "config": json.loads(json.dumps(t.run_config, default=str)),
        "env": {"torch": torch.__version__, "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
    }


def point_latest(link: str | os.PathLike, run_dir: Path) -> str | None:
    """Atomically point symlink ``link`` at ``run_dir`` (relative target). Returns a warning or None.

    A new link is made under a unique temporary name and renamed over the old one, so concurrent
    runs (a Hydra multirun) never see a missing or half-made link: the last to finish wins. An
    existing ``link`` that is not a symlink is left alone.
    """
    link = Path(link)
    if link.exists() and not link.is_symlink():
        return f"warning: not updating {link}: it exists and is not a symlink"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(run_dir.resolve(), link.parent.resolve())
        tmp = link.parent / f".{link.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as err:
        return f"warning: could not point {link} at {run_dir}: {err.strerror or err}"
    return None


class OutputsMixin:
    """The :class:`~kanzoo.train.Trainer`'s run directory: lock, final model, best, summary, link."""

    def _open_run_dir(self) -> None:
        """Create and lock the run directory (main process); every process learns the outcome."""
        acc, error = self.acc, None
        self._created, self.lock = [], None
        if acc.is_main_process:
            try:
                self._created = _mkdirs(self.run_dir)
                self.lock = RunDirLock(self.run_dir)
                self.lock.acquire()
            except OSError as err:
                error = (
                    err
                    if isinstance(err, (RunDirError, RunDirBusyError))
                    else RunDirError(f"cannot use run_dir {self.run_dir}: {' '.join(str(err).split())}")
                )
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            message = broadcast_object_list([str(error) if error else None])[0]
            if message and error is None:
                error = RunDirError(message)
        if error is not None:
            self._remove_created()
            raise error
        note = describe_previous(self.lock.previous) if self.lock else None
        if note:
            self._print(f"note: {note}")

    def _remove_created(self) -> None:
        """After a failed start: remove the lock and the (empty) directories this run created."""
        if getattr(self, "lock", None) is not None:
            self.lock.release()
        for path in reversed(getattr(self, "_created", [])):
            try:
                path.rmdir()  # only if empty: never removes anything else
            except OSError:
                break

    def _save_pretrained(self, directory: Path) -> None:
        save_pretrained(self.acc, self._module, self.model, directory, fsdp=self._fsdp)

    def _maybe_save_best(self, metrics: dict[str, float]) -> None:
        key = self.task.monitor
        if not self.config.save_best or key not in metrics:
            return
        value = metrics[key]
        better = self.best is None or (value > self.best if self.task.monitor_max else value < self.best)
        if better:
            self.best = value
            target = self.run_dir / "best"
            tmp = ckpt.tmp_path(target)
            try:
                if self.acc.is_main_process:
                    ckpt.stage(target)
                self.acc.wait_for_everyone()
                self._save_pretrained(tmp)
                if self.acc.is_main_process:
                    ckpt.write_json_atomic(tmp / SUMMARY_FILE, {"step": self.step, **metrics})
                    ckpt.publish(tmp, target)
            except Exception as err:
                raise self._storage_error(err, target, tmp) from err
            self.acc.wait_for_everyone()

    def _save_final_model(self) -> Path:
        acc = self.acc
        final = self.run_dir / "final"
        tmp = ckpt.tmp_path(final)
        self.watch.mark(self.step, "checkpoint")
        try:
            if acc.is_main_process:
                ckpt.stage(final)
            acc.wait_for_everyone()
            self._save_pretrained(tmp)
            if acc.is_main_process:
                tokenizer = (getattr(self.data, "info", None) or {}).get("tokenizer")
                if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
                    tokenizer.save_pretrained(str(tmp))
                ckpt.publish(tmp, final)
        except Exception as err:
            reason = storage_reason(err)
            if reason is None:
                raise
            if acc.is_main_process and ckpt.is_ours(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            rescue = (
                "the model is sharded (FSDP) and was not rescued"
                if self._fsdp
                else rescue_model(self._module, self.name)
            )
            kept = f"; the last complete checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
            raise CheckpointWriteError(
                f"cannot write the final model to {final}: {reason}; {rescue}{kept}"
            ) from err
        acc.wait_for_everyone()
        return final

    def _write_summary(self, final: Path, metrics: dict[str, float]) -> None:
        acc = self.acc
        if acc.is_main_process:
            summary = run_summary(self, metrics)
            # final/train_summary.json is written last: its presence marks a finished run
            ckpt.write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
            ckpt.write_json_atomic(final / SUMMARY_FILE, summary)
            try:
                plot_loss_curve(
                    self.history, self.run_dir / "loss_curve.png", title=f"{self.name} ({self.task.name})"
                )
            except OSError as err:  # the run itself is complete and saved
                self._print(f"warning: could not write {self.run_dir / 'loss_curve.png'}: {err}")
            if self.config.latest_link:
                warning = point_latest(self.config.latest_link, self.run_dir)
                if warning:
                    self._print(warning)
        acc.wait_for_everyone()

    def _print_done(self, final: Path) -> None:
        self._print(f"Evaluate it: python evaluate.py checkpoint={final}")
        self._print(f"Final checkpoint: {final}")
