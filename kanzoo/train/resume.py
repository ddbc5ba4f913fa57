"""What a resumable checkpoint holds and how the trainer writes and reads it (no pickle anywhere).

``<run_dir>/checkpoints/step_XXXXX/``::

    model.safetensors                      full model state_dict (gathered under FSDP)
    optimizer.json + optimizer.safetensors optimizer state_dict (param_groups, moments, steps)
    scheduler.json (+ .safetensors)        LR scheduler state_dict
    scaler.json (+ .safetensors)           GradScaler state (fp16 only)
    process_<rank>.json + .safetensors     per process: Python / NumPy / torch / CUDA generators
                                           and the loss accumulator of the next log step
    model/                                 from_pretrained copy (trainer.save_pretrained_in_checkpoints)
    trainer_state.json                     step, data position, history, loss accumulator (written last)

Loading checks every file before it touches the model: a pickle anywhere in the directory, a
missing, truncated or corrupt file is a one-line :class:`~kanzoo.train.state.CheckpointError`.
The FSDP branch uses ``torch.distributed.checkpoint``'s full-state-dict helpers; it has not run
on a GPU yet (the CPU tests cover one process and DDP).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from .outputs import CheckpointWriteError, is_finished, storage_reason
from .state import (
    CheckpointError,
    capture_rng,
    load_state,
    load_tensors,
    refuse_pickles,
    restore_rng,
    save_state,
)

MODEL_FILE = "model.safetensors"


def _is_fsdp(acc) -> bool:
    return str(acc.distributed_type).endswith("FSDP")


def _inner_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it


def model_state(acc, module: nn.Module, prepared: nn.Module) -> dict[str, torch.Tensor] | None:
    """Full model state_dict on the main process (None elsewhere); collective under FSDP."""
    if _is_fsdp(acc):
        state = acc.get_state_dict(prepared)
        return state if acc.is_main_process else None
    return module.state_dict() if acc.is_main_process else None


def save_training_state(
    directory: Path, *, acc, module, prepared, optimizer, scheduler, extra: dict[str, Any] | None = None
) -> None:
    """Write model, optimizer, scheduler, scaler and this process's RNG (+ ``extra``) into ``directory``.

    Collective: every process calls it (each writes its own RNG file; the main process the rest).
    """
    from safetensors.torch import save_file

    weights = model_state(acc, module, prepared)
    if _is_fsdp(acc):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(prepared, _inner_optimizer(optimizer), options=options)
    else:
        optim_state = _inner_optimizer(optimizer).state_dict() if acc.is_main_process else None
    if acc.is_main_process:
        seen: dict[int, torch.Tensor] = {}
        tensors = {}
        for k, v in weights.items():
            t = v.detach().to("cpu")
            ptr = t.untyped_storage().data_ptr() if t.numel() else None
            tensors[k] = (t.clone() if ptr in seen else t).contiguous()  # tied weights: a copy each
            if ptr is not None:
                seen[ptr] = t
        save_file(tensors, str(directory / MODEL_FILE), metadata={"format": "pt"})
        save_state(directory, "optimizer", optim_state)
        save_state(directory, "scheduler", scheduler.state_dict())
        if getattr(acc, "scaler", None) is not None:
            save_state(directory, "scaler", acc.scaler.state_dict())
    save_state(directory, f"process_{acc.process_index}", {"rng": capture_rng(), **(extra or {})})


def file_digests(directory: Path, *, rank: int, main: bool) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of the files this process wrote into ``directory``."""
    import hashlib

    out = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if not path.is_file() or name in (ckpt.STATE_FILE, ckpt.OWNER_FILE):
            continue
        per_process = name.startswith("process_")
        if (per_process and not name.startswith(f"process_{rank}.")) or (not per_process and not main):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        out[name] = [path.stat().st_size, digest.hexdigest()]
    return out


def check_training_state(
    directory: Path,
    *,
    world_size: int,
    saved_world_size: int,
    rank: int,
    digests: dict[str, Any] | None = None,
) -> None:
    """Refuse a directory holding pickles, lacking a file this process will read, or whose files
    differ from what was written (sizes and SHA-256 recorded in the completion marker)."""
    refuse_pickles(directory)
    if digests is not None:
        if not isinstance(digests, dict):
            raise CheckpointError(f"{directory / ckpt.STATE_FILE} holds no valid file list")
        own = file_digests(directory, rank=rank, main=True)
        for name, expected in digests.items():
            if name.startswith("process_") and not name.startswith(f"process_{rank}."):
                continue
            got = own.get(name)
            if got is None:
                raise CheckpointError(f"cannot resume from {directory}: {name} is missing")
            if list(got) != list(expected):
                raise CheckpointError(
                    f"checkpoint file {directory / name} is corrupt or truncated (its size or SHA-256 "
                    f"differs from the record in {ckpt.STATE_FILE})"
                )
    needed = [MODEL_FILE, "optimizer.json", "optimizer.safetensors", "scheduler.json"]
    if world_size == saved_world_size:
        needed += [f"process_{rank}.json", f"process_{rank}.safetensors"]
    missing = [n for n in needed if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(
            f"cannot resume from {directory}: {', '.join(missing)} missing (not a complete kanzoo checkpoint)"
        )


def load_training_state(
    directory: Path, *, acc, module, prepared, optimizer, scheduler, saved_world_size: int
) -> tuple[dict[str, Any] | None, str | None]:
    """Restore what :func:`save_training_state` wrote.

    Returns:
        ``(extra, warning)``: this process's ``extra`` dict (None when the number of processes
        changed) and a warning line or None.

    A checkpoint taken with another number of processes restores everything but the per-process
    RNG streams (dropout/augmentation then differ from the original run: the warning says so).
    """
    weights = load_tensors(directory / MODEL_FILE)
    optim_state = load_state(directory, "optimizer")
    sched_state = load_state(directory, "scheduler")
    scaler_state = load_state(directory, "scaler") if (directory / "scaler.json").is_file() else None
    same_world = saved_world_size == acc.num_processes
    own = load_state(directory, f"process_{acc.process_index}") if same_world else None
    if own is not None and not (isinstance(own, dict) and "rng" in own):
        raise CheckpointError(f"{directory / f'process_{acc.process_index}.json'} holds no RNG state")
    if not isinstance(optim_state, dict) or not isinstance(sched_state, dict):
        raise CheckpointError(f"{directory}: optimizer/scheduler state is not a mapping")

    if _is_fsdp(acc):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(prepared, weights, options=options)
        set_optimizer_state_dict(prepared, _inner_optimizer(optimizer), optim_state, options=options)
    else:
        _load_model(module, weights, directory)
        _check_optimizer_state(optim_state, _inner_optimizer(optimizer), directory)
        try:
            _inner_optimizer(optimizer).load_state_dict(optim_state)
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(
                f"cannot resume from {directory}: its optimizer state does not fit this model's "
                f"parameter groups ({' '.join(str(err).split())[:200]})"
            ) from None
    _check_like(sched_state, scheduler.state_dict(), directory / "scheduler.json")
    scheduler.load_state_dict(sched_state)
    if scaler_state is not None and getattr(acc, "scaler", None) is not None:
        _check_like(scaler_state, acc.scaler.state_dict(), directory / "scaler.json")
        acc.scaler.load_state_dict(scaler_state)
    if own is not None:
        restore_rng(own.pop("rng"), where=str(directory / f"process_{acc.process_index}.json"))
        return own, None
    return None, (
        f"warning: {directory} was written by {saved_world_size} process(es), this run has "
        f"{acc.num_processes}: dropout/augmentation randomness will differ from the original run"
    )


def _check_like(saved: Any, live: Any, where: Path, path: str = "") -> None:
    """``saved`` has the structure and value types of ``live`` (a state_dict of the same object)."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where} does not match this run's state ({what} at {path or 'top level'!r})")

    if isinstance(live, dict):
        if not isinstance(saved, dict) or set(saved) != set(live):
            raise bad("different keys")
        for k in live:
            _check_like(saved[k], live[k], where, f"{path}.{k}" if path else str(k))
    elif isinstance(live, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(live):
            raise bad("a different length")
        for i, (a, b) in enumerate(zip(saved, live)):
            _check_like(a, b, where, f"{path}.{i}")
    elif torch.is_tensor(live):
        if not torch.is_tensor(saved) or saved.shape != live.shape:
            raise bad("a tensor of another shape")
    elif isinstance(live, bool) or live is None:
        if saved is not None and not isinstance(saved, bool):
            raise bad(f"{type(saved).__name__} instead of a flag")
    elif isinstance(live, (int, float)):
        if isinstance(saved, bool) or not isinstance(saved, (int, float)):
            raise bad(f"{type(saved).__name__} instead of a number")
    elif isinstance(live, str) and not isinstance(saved, str):
        raise bad(f"{type(saved).__name__} instead of a string")


def _check_optimizer_state(state: dict[str, Any], optimizer, directory: Path) -> None:
    """Group layout and per-parameter state tensors fit the live optimizer's parameters."""
    where = directory / "optimizer.json"
    groups, per_param = state.get("param_groups"), state.get("state")
    live = optimizer.param_groups
    if not isinstance(groups, list) or not isinstance(per_param, dict) or len(groups) != len(live):
        raise CheckpointError(f"{where} does not fit this model's optimizer parameter groups")
    params = {}
    for g_saved, g_live in zip(groups, live):
        ids = g_saved.get("params") if isinstance(g_saved, dict) else None
        if not isinstance(ids, list) or len(ids) != len(g_live["params"]):
            raise CheckpointError(f"{where} does not fit this model's optimizer parameter groups")
        params.update(zip(ids, g_live["params"]))
        for key, value in g_saved.items():
            if key != "params" and key in g_live and isinstance(g_live[key], (int, float)):
                if isinstance(value, bool) != isinstance(g_live[key], bool) or not isinstance(
                    value, (int, float)
                ):
                    raise CheckpointError(f"{where}: parameter group setting {key!r} is {value!r:.40}")
    for pid, entry in per_param.items():
        if pid not in params or not isinstance(entry, dict):
            raise CheckpointError(f"{where} holds state for an unknown parameter {pid!r:.20}")
        for name, value in entry.items():
            if torch.is_tensor(value) and value.ndim > 0 and value.shape != params[pid].shape:
                raise CheckpointError(f"{where}: {name} of parameter {pid} has shape {tuple(value.shape)}")
            if not torch.is_tensor(value) and not isinstance(value, (int, float)):
                raise CheckpointError(f"{where}: {name} of parameter {pid} is not a tensor or number")


def _load_model(module: nn.Module, weights: dict[str, torch.Tensor], directory: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    dtypes = sorted(
        k for k in set(own) & set(weights) if k not in shapes and own[k].dtype != weights[k].dtype
    )
    if missing or unexpected or shapes or dtypes:
        parts = []
        kinds = (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", shapes),
            ("mis-typed", dtypes),
        )
        for label, keys in kinds:
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        raise CheckpointError(
            f"cannot resume from {directory}: its model weights do not fit this model: {'; '.join(parts)}"
        )
    module.load_state_dict(weights)


class CheckpointMixin:
    """The :class:`~kanzoo.train.Trainer`'s resumable checkpoints: which to resume, save, load."""

    def _resume_target(self) -> tuple[Path | None, bool]:
        """The checkpoint to resume from (or None) and whether the run already finished."""
        cfg, final = self.config, self.run_dir / "final"
        resume = cfg.resume
        if resume is None:
            existing = ckpt.latest_checkpoint(self.ckpt_root)
            if existing is not None or final.exists():
                raise ValueError(
                    f"run_dir {self.run_dir} already holds a run ({existing or final}); pass "
                    "trainer.resume=auto to continue it or choose a new run_dir"
                )
            return None, False
        if resume == "auto":
            path = ckpt.latest_checkpoint(self.ckpt_root)
            if path is None:
                if is_finished(final, cfg.max_steps):
                    return None, True
                if final.exists():
                    raise ValueError(
                        f"run_dir {self.run_dir} holds a finished run (final/) but no resumable checkpoint "
                        "(it ran with trainer.checkpoint_every=0); choose a new run_dir"
                    )
                return None, False
        else:
            path = Path(resume)
            if not ckpt.is_complete(path):
                for root in (path / "checkpoints", path):  # a run directory was given
                    if path.is_dir() and ckpt.latest_checkpoint(root) is not None:
                        path = ckpt.latest_checkpoint(root)
                        break
        state = ckpt.read_state(path)  # a clear FileNotFoundError / ValueError
        if state["step"] > cfg.max_steps:
            raise ValueError(
                f"cannot resume {path}: it is at step {state['step']}, "
                f"beyond trainer.max_steps={cfg.max_steps}"
            )
        inside = path.resolve().parent == self.ckpt_root.resolve()
        if not inside and (ckpt.latest_checkpoint(self.ckpt_root) is not None or final.exists()):
            raise ValueError(f"run_dir {self.run_dir} already holds a run; resume {path} into a new run_dir")
        return path, inside and state["step"] == cfg.max_steps and is_finished(final, cfg.max_steps)

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "epoch_samples": self.epoch_samples,
            "samples_seen": self.samples_seen,
            "world_size": self.acc.num_processes,
            "global_micro_batch": self.config.batch_size * self.acc.num_processes,
            "max_steps": self.config.max_steps,
            "elapsed_s": self._elapsed(),
            "best": self.best,
            "history": self.history,
            "steps_acc": self._steps_acc,
        }

    def _storage_error(self, err: BaseException, what: Path, tmp: Path | None) -> BaseException:
        reason = storage_reason(err)
        if reason is None:
            return err
        if tmp is not None and self.acc.is_main_process and ckpt.is_ours(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        kept = (
            f"the last complete checkpoint is {self.last_checkpoint} (trainer.resume=auto continues from it)"
            if self.last_checkpoint
            else "no complete checkpoint exists"
        )
        return CheckpointWriteError(f"cannot write checkpoint {what}: {reason}; {kept}")

    def _save_checkpoint(self) -> Path:
        acc = self.acc
        final = self.ckpt_root / ckpt.checkpoint_name(self.step)
        self.watch.mark(self.step, "checkpoint")
        tmp = ckpt.tmp_path(final)
        try:
            if acc.is_main_process:
                self.ckpt_root.mkdir(parents=True, exist_ok=True)
                ckpt.stage(final)
            acc.wait_for_everyone()
            save_training_state(
                tmp,
                acc=acc,
                module=self._module,
                prepared=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                extra={"loss_acc": self._loss_acc},
            )
            if self.config.save_pretrained_in_checkpoints:
                self._save_pretrained(tmp / "model")
            acc.wait_for_everyone()
            digests = file_digests(tmp, rank=acc.process_index, main=acc.is_main_process)
            if acc.num_processes > 1:
                every = [None] * acc.num_processes
                torch.distributed.all_gather_object(every, digests)
                digests = {k: v for d in every for k, v in d.items()}
            if acc.is_main_process:
                # The marker goes last: a directory without it is never taken for a checkpoint.
                ckpt.write_json_atomic(tmp / ckpt.STATE_FILE, {**self._trainer_state(), "files": digests})
                ckpt.publish(tmp, final)
                ckpt.prune(self.ckpt_root, self.config.keep_checkpoints)
        except Exception as err:
            raise self._storage_error(err, final, tmp) from err
        acc.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def _check_same_architecture(self, path: Path) -> None:
        """Refuse a checkpoint whose saved model config differs from the model built now: weights
        of e.g. another stride load without error but compute something else."""
        saved_file = path / "model" / "config.json"
        to_dict = getattr(getattr(self._module, "config", None), "to_dict", None)
        if not saved_file.is_file() or to_dict is None:
            return
        try:
            saved = json.loads(saved_file.read_text())
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{saved_file} is corrupt ({err})") from None
        now = json.loads(json.dumps(to_dict(), default=str))
        ignore = {"kanzoo_version", "transformers_version", "torch_dtype", "dtype", "architectures"}
        diff = sorted(
            k
            for k in set(saved if isinstance(saved, dict) else {}) & set(now)
            if not k.startswith("_") and k not in ignore and saved[k] != now[k]
        )
        if diff:
            detail = ", ".join(f"{k} (checkpoint {saved[k]!r}, now {now[k]!r})" for k in diff[:5])
            raise ValueError(
                f"cannot resume {path}: the model differs from the checkpoint's in {detail}; "
                "set the checkpoint's values with model.<key>=... overrides"
            )

    def _load_checkpoint(self, path: Path) -> None:
        acc = self.acc
        state = ckpt.read_state(path)
        saved_world = int(state.get("world_size", 1))
        check_training_state(
            path,
            world_size=acc.num_processes,
            saved_world_size=saved_world,
            rank=acc.process_index,
            digests=state.get("files"),
        )
        self._check_same_architecture(path)
        gb = self.config.batch_size * acc.num_processes
        if state["epoch_samples"] % gb:
            raise ValueError(
                f"cannot resume {path}: it stopped {state['epoch_samples']} samples into "
                f"epoch {state['epoch']}, "
                f"not a multiple of the new global micro-batch {gb} (batch_size x processes)"
            )
        extra, warning = load_training_state(
            path,
            acc=acc,
            module=self._module,
            prepared=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            saved_world_size=saved_world,
        )
        if warning:
            self._print(warning)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.epoch_samples, self.samples_seen = int(state["epoch_samples"]), int(state["samples_seen"])
        self.best = state.get("best")
        self.history = [r for r in state.get("history", []) if r.get("step", 0) <= self.step]
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        loss_acc = (extra or {}).get("loss_acc")
        if torch.is_tensor(loss_acc) and loss_acc.numel() == 1 and loss_acc.is_floating_point():
            # the partial average of the next log step (identical to the uninterrupted run)
            self._loss_acc.copy_(loss_acc.reshape(()))
            self._steps_acc = int(state.get("steps_acc", 0))
        self.last_checkpoint = path
