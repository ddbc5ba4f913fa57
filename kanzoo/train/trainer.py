"""The accelerate training loop: one code path for CPU, one GPU, DDP and FSDP."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import checkpoint as ckpt
from .config import OptimConfig, ScheduleConfig, TrainerConfig
from .grid import update_grids
from .loggers import Logger
from .optim import build_optimizer, build_scheduler
from .plots import plot_loss_curve
from .sampler import ShardedBatchSampler, ShardedEvalSampler
from .tasks import get_task


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stopped without taking that optimizer step."""


def resolve_mixed_precision(setting: str, *, cpu: bool) -> str:
    """``"auto"`` -> bf16 on GPUs that support it, fp16 on other GPUs, ``"no"`` on CPU."""
    if setting != "auto":
        return setting
    if cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _release_accelerator_state() -> None:
    """Forget accelerate's process-wide precision/device choice (keeping the process group), so
    a run may pick other settings than an earlier run in the same process."""
    from accelerate.state import AcceleratorState, GradientState

    for state in (AcceleratorState, GradientState):
        reset = getattr(state, "_reset_state", None)
        if reset is not None:
            reset()


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Trains a built model on a built data module with accelerate.

    Call :meth:`fit`; it returns the path of the final checkpoint (``<run_dir>/final``, loadable
    with ``from_pretrained``). Under ``accelerate launch`` every process runs the same code.

    Args:
        model: The model (task forward contract of ``kanzoo.models``).
        data: A ``kanzoo.data`` DataModule (``task``, ``train``, ``val``, ``collate_fn``, ``info``).
        optim: Optimizer settings.
        schedule: Learning-rate schedule.
        config: Run settings (steps, batch size, precision, checkpoints, ...).
        loggers: Metric sinks (main process only).
        run_config: The full run configuration, stored in ``train_summary.json`` and sent to loggers.
        name: Model name shown in the progress bar and the summary.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        data: Any,
        optim: OptimConfig | None = None,
        schedule: ScheduleConfig | None = None,
        config: TrainerConfig | None = None,
        loggers: list[Logger] | None = None,
        run_config: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.optim_config = optim or OptimConfig()
        self.schedule_config = schedule or ScheduleConfig()
        self.config = config or TrainerConfig()
        self.loggers = list(loggers or [])
        self.run_config = run_config or {}
        self.name = name or type(model).__name__
        self.task = get_task(data.task)
        self.run_dir = Path(self.config.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.history: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ setup
    def _make_accelerator(self):
        from accelerate import Accelerator

        cfg = self.config
        has_cuda = torch.cuda.is_available()
        if cfg.device in ("gpu", "cuda") and not has_cuda:
            raise ValueError("trainer.device=gpu but no CUDA device is visible; use trainer.device=cpu")
        cpu = cfg.device == "cpu" or not has_cuda
        _release_accelerator_state()
        return Accelerator(cpu=cpu, mixed_precision=resolve_mixed_precision(cfg.mixed_precision, cpu=cpu))

    def _train_loader(self, epoch: int, start: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start)
        gen = torch.Generator()
        # A private generator: creating the iterator must not consume the global RNG, which
        # is part of the resumable state (dropout, augmentation).
        gen.manual_seed(self.config.seed * 7919 + epoch * 104729 + start)
        return DataLoader(
            self.data.train,
            batch_sampler=self.sampler,
            collate_fn=getattr(self.data, "collate_fn", None),
            num_workers=self.config.num_workers,
            pin_memory=self.acc.device.type == "cuda",
            generator=gen,
        )

    def _eval_loader(self) -> DataLoader | None:
        val = getattr(self.data, "val", None)
        if val is None or len(val) == 0:
            return None
        cfg, acc = self.config, self.acc
        sampler = ShardedEvalSampler(
            num_samples=len(val),
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            world_size=acc.num_processes,
            rank=acc.process_index,
            max_batches=cfg.eval_max_batches,
        )
        return DataLoader(
            val,
            batch_sampler=sampler,
            collate_fn=getattr(self.data, "collate_fn", None),
            num_workers=cfg.num_workers,
            pin_memory=acc.device.type == "cuda",
        )

    def _resume_path(self) -> Path | None:
        resume = self.config.resume
        if resume is None:
            existing = ckpt.latest_checkpoint(self.ckpt_root)
            if existing is not None or (self.run_dir / "final").exists():
                what = existing or self.run_dir / "final"
                raise ValueError(
                    f"run_dir {self.run_dir} already holds a run ({what}); pass trainer.resume=auto to "
                    "continue it or choose a new run_dir"
                )
            return None
        if resume == "auto":
            return ckpt.latest_checkpoint(self.ckpt_root)
        path = Path(resume)
        if ckpt.is_complete(path):
            return path
        if path.is_dir() and ckpt.latest_checkpoint(path / "checkpoints") is not None:
            return ckpt.latest_checkpoint(path / "checkpoints")  # a run directory was given
        if path.is_dir() and ckpt.latest_checkpoint(path) is not None:
            return ckpt.latest_checkpoint(path)
        ckpt.read_state(path)  # raises a clear FileNotFoundError / ValueError
        return path

    # ------------------------------------------------------------- checkpoints
    def _save_pretrained(self, directory: Path) -> None:
        """Write the model in from_pretrained format (collective: all processes must call it)."""
        acc = self.acc
        unwrapped = acc.unwrap_model(self.model)
        # FSDP shards parameters: gather a full state dict (every process takes part).
        state_dict = acc.get_state_dict(self.model) if self._fsdp else None
        if not acc.is_main_process:
            return
        directory.mkdir(parents=True, exist_ok=True)
        save = getattr(unwrapped, "save_pretrained", None)
        if save is not None and state_dict is None:
            save(str(directory))
            return
        from safetensors.torch import save_file

        if state_dict is None:
            state_dict = unwrapped.state_dict()
        config = getattr(unwrapped, "config", None)
        if hasattr(config, "save_pretrained"):  # transformers PretrainedConfig
            config.save_pretrained(str(directory))
        elif hasattr(config, "to_dict"):  # kanzoo dataclass configs
            payload = {"kanzoo_model": getattr(unwrapped, "kanzoo_model", None), **config.to_dict()}
            (directory / "config.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
        # Clone so tied/shared tensors serialize independently.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})

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
        }

    def _save_checkpoint(self) -> Path:
        acc = self.acc
        final = self.ckpt_root / ckpt.checkpoint_name(self.step)
        tmp = ckpt.tmp_path(final)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        if self.config.save_pretrained_in_checkpoints:
            self._save_pretrained(tmp / "model")
        acc.wait_for_everyone()
        if acc.is_main_process:
            # The marker goes last: a directory without it is never taken for a checkpoint.
            ckpt.write_json_atomic(tmp / ckpt.STATE_FILE, self._trainer_state())
            ckpt.publish(tmp, final)
            ckpt.prune(self.ckpt_root, self.config.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def _check_same_architecture(self, path: Path) -> None:
        """Refuse a checkpoint whose saved model config differs from the model built now: weights
        of e.g. another stride load without error but compute something else."""
        saved_file = path / "model" / "config.json"
        config = getattr(self.acc.unwrap_model(self.model), "config", None)
        to_dict = getattr(config, "to_dict", None)
        if not saved_file.is_file() or to_dict is None:
            return
        saved, now = json.loads(saved_file.read_text()), json.loads(json.dumps(to_dict(), default=str))
        ignore = {"kanzoo_version", "transformers_version", "torch_dtype", "dtype", "architectures"}
        diff = sorted(
            k
            for k in set(saved) & set(now)
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
        self._check_same_architecture(path)
        acc.load_state(str(path))
        if not (path / f"random_states_{acc.process_index}.pkl").is_file():
            self._print(
                f"warning: {path} has no RNG state for process {acc.process_index}; "
                "dropout/augmentation randomness will differ from the original run"
            )
        gb = self.config.batch_size * acc.num_processes
        if state["epoch_samples"] % gb:
            raise ValueError(
                f"cannot resume {path}: it stopped {state['epoch_samples']} samples into "
                f"epoch {state['epoch']}, "
                f"not a multiple of the new global micro-batch {gb} (batch_size x processes)"
            )
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.epoch_samples, self.samples_seen = int(state["epoch_samples"]), int(state["samples_seen"])
        self.best = state.get("best")
        self.history = [r for r in state.get("history", []) if r.get("step", 0) <= self.step]
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        self.last_checkpoint = path
        if acc.is_main_process:
            for logger in self.loggers:
                logger.truncate_after(self.step)

    # --------------------------------------------------------------- helpers
    def _print(self, message: str) -> None:
        if self.acc.is_main_process:
            if self.bar is not None:
                self.bar.write(message)
            else:
                print(message, flush=True)

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t0)

    def _log(self, metrics: dict[str, float]) -> None:
        record = {"step": self.step, **metrics}
        self.history.append(record)
        if self.acc.is_main_process:
            for logger in self.loggers:
                logger.log(metrics, step=self.step)

    def _next_batch(self) -> dict[str, Any]:
        while True:
            try:
                batch = next(self._iter)
                self.epoch_samples += self.config.batch_size * self.acc.num_processes
                return _to_device(batch, self.acc.device)
            except StopIteration:
                if self.epoch_samples == 0:
                    raise RuntimeError("the training loader yielded no batch") from None
                self.epoch, self.epoch_samples = self.epoch + 1, 0
                self._iter = iter(self._train_loader(self.epoch, 0))

    @property
    def _fsdp(self) -> bool:
        return str(self.acc.distributed_type).endswith("FSDP")

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Task metrics on the validation split, exact across processes (all-reduced sums)."""
        if self.eval_loader is None:
            return {}
        acc = self.acc
        model = self.model if self._fsdp else acc.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        sums = torch.zeros(len(self.task.sum_keys), dtype=torch.float64)
        n_batches = len(self.eval_loader)
        if self._fsdp:  # sharded forward passes are collective: run the same count everywhere
            count = torch.tensor(n_batches, device=acc.device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MIN)
            n_batches = int(count.item())
        try:
            with acc.autocast():
                for i, batch in enumerate(self.eval_loader):
                    if i >= n_batches:
                        break
                    part = self.task.eval_sums(model, _to_device(batch, acc.device))
                    sums += torch.tensor([part[k] for k in self.task.sum_keys], dtype=torch.float64)
        finally:
            model.train(was_training)
        sums = acc.reduce(sums.to(acc.device), "sum").cpu()
        return self.task.finalize(dict(zip(self.task.sum_keys, sums.tolist())))

    # ------------------------------------------------------------------ fit
    def fit(self) -> Path:
        """Train to ``config.max_steps`` (resuming if asked) and return the final checkpoint path."""
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        cfg = self.config
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        self.acc = acc = self._make_accelerator()
        self.bar = None
        if acc.num_processes > 1:
            # Every process must write into one directory: ranks resolving a timestamped default
            # a second apart would not. Rank 0's choice wins.
            from accelerate.utils import broadcast_object_list

            self.run_dir = Path(broadcast_object_list([str(self.run_dir)])[0])
            self.ckpt_root = self.run_dir / "checkpoints"
        set_seed(cfg.seed)
        resume_from = self._resume_path()
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_tmp(self.ckpt_root)
            ckpt.remove_stale_tmp(self.run_dir)
        acc.wait_for_everyone()

        self.sampler = ShardedBatchSampler(
            num_samples=len(self.data.train),
            batch_size=cfg.batch_size,
            world_size=acc.num_processes,
            rank=acc.process_index,
            seed=cfg.seed,
        )
        self.eval_loader = self._eval_loader()
        model = self.model
        on_step = getattr(self.task, "on_step", None)  # a task may reshape the model (grid extension)
        if on_step is not None:
            on_step(model, ckpt.read_state(resume_from)["step"] if resume_from is not None else 0, None)
        if cfg.compile:
            model = torch.compile(model)
        optimizer = build_optimizer(model, self.optim_config)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, total_steps=cfg.max_steps, schedule=self.schedule_config
        )
        acc.register_for_checkpointing(self.scheduler)

        self.step = self.epoch = self.epoch_samples = self.samples_seen = 0
        self.best, self.last_checkpoint, self._elapsed_before = None, None, 0.0
        if resume_from is not None:
            self._load_checkpoint(resume_from)
        self._t0 = time.perf_counter()
        gb_step = cfg.batch_size * cfg.grad_accum_steps * acc.num_processes
        n_params = sum(p.numel() for p in acc.unwrap_model(self.model).parameters())
        self._print(
            f"{self.name}: {n_params:,} params | task {self.task.name} | "
            f"{len(self.data.train):,} train samples | "
            f"{acc.num_processes} process(es) on {acc.device.type} | precision {acc.mixed_precision} | "
            f"global batch {gb_step} | {cfg.max_steps} steps | run_dir {self.run_dir}"
            + (f" | resumed from {resume_from} (step {self.step})" if resume_from else "")
        )
        if acc.is_main_process:
            for logger in self.loggers:
                logger.log_config(self.run_config)

        self.bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=self.name,
            dynamic_ncols=True,
            disable=not (acc.is_main_process and cfg.progress),
            mininterval=1.0,
        )
        start = self.epoch_samples // (cfg.batch_size * acc.num_processes)
        self._iter = iter(self._train_loader(self.epoch, start))
        try:
            self._loop()
            metrics = self.evaluate()
            if metrics:
                self._log(metrics)
                self._print(f"final ({self.step} steps): " + _fmt(metrics))
                self._maybe_save_best(metrics)
            if cfg.checkpoint_every and (
                self.last_checkpoint is None or self.last_checkpoint.name != ckpt.checkpoint_name(self.step)
            ):
                self._save_checkpoint()
            final = self._save_final(metrics)
        finally:
            self.bar.close()
            self.bar = None
            if acc.is_main_process:
                for logger in self.loggers:
                    logger.finish()
        acc.wait_for_everyone()
        acc.end_training()
        self._print(f"Final checkpoint: {final}")
        return final

    def _loop(self) -> None:
        cfg, acc, task = self.config, self.acc, self.task
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        model.train()
        loss_acc, steps_acc, units_acc = 0.0, 0, 0
        t_last = time.perf_counter()
        grid_until = cfg.grid_update_until if cfg.grid_update_until is not None else cfg.max_steps // 2
        on_step = getattr(task, "on_step", None)
        while self.step < cfg.max_steps:
            loss_sum = torch.zeros((), device=acc.device)
            for micro in range(cfg.grad_accum_steps):
                batch = self._next_batch()
                last = micro == cfg.grad_accum_steps - 1
                with contextlib.nullcontext() if last else acc.no_sync(model):
                    loss = task.loss(model, batch)
                    acc.backward(loss / cfg.grad_accum_steps)
                loss_sum += loss.detach().float()
                units_acc += task.count(batch) * acc.num_processes
                self.samples_seen += cfg.batch_size * acc.num_processes
            step_loss = acc.reduce(loss_sum / cfg.grad_accum_steps, "mean").item()
            if cfg.detect_nonfinite and not math.isfinite(step_loss):
                optimizer.zero_grad(set_to_none=True)
                self._on_nonfinite(step_loss)
            grad_norm = None
            if cfg.clip_grad_norm:
                grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if on_step is not None:
                on_step(acc.unwrap_model(model), self.step, optimizer)
            loss_acc, steps_acc = loss_acc + step_loss, steps_acc + 1
            self.bar.update(1)

            if cfg.grid_update_every and self.step % cfg.grid_update_every == 0 and self.step <= grid_until:
                self._grid_update(batch)
            if self.step % max(cfg.log_every, 1) == 0 or self.step == cfg.max_steps:
                now = time.perf_counter()
                metrics = {
                    "loss": loss_acc / steps_acc,
                    "lr": scheduler.get_last_lr()[0],
                    f"{task.unit}_per_s": units_acc / max(now - t_last, 1e-9),
                    "epoch": self.epoch + self.epoch_samples / max(len(self.data.train), 1),
                }
                if grad_norm is not None:
                    metrics["grad_norm"] = float(grad_norm)
                self._log(metrics)
                self.bar.set_postfix(
                    loss=f"{metrics['loss']:.4f}",
                    lr=f"{metrics['lr']:.2e}",
                    **{f"{task.unit}/s": f"{metrics[f'{task.unit}_per_s']:.0f}"},
                    refresh=False,
                )
                loss_acc, steps_acc, units_acc, t_last = 0.0, 0, 0, now
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                metrics = self.evaluate()
                if metrics:
                    self._log(metrics)
                    self._print(f"step {self.step}: " + _fmt(metrics))
                    self._maybe_save_best(metrics)
                t_last = time.perf_counter()  # keep evaluation out of the throughput
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._save_checkpoint()
                t_last = time.perf_counter()

    def _grid_update(self, batch: dict[str, Any]) -> None:
        acc = self.acc
        if self._fsdp:
            return  # sharded parameters cannot be refit layer by layer
        unwrapped = acc.unwrap_model(self.model)
        gather = acc.gather if acc.num_processes > 1 else None
        updated = update_grids(
            unwrapped,
            lambda: self.task.loss(unwrapped, batch),
            max_rows=self.config.grid_update_samples,
            seed=self.config.seed * 1_000_003 + self.step,
            gather=gather,
        )
        if updated and self.step == self.config.grid_update_every:
            self._print(
                f"grid update on {len(updated)} B-spline layer(s) every {self.config.grid_update_every} steps"
            )

    def _on_nonfinite(self, value: float) -> None:
        where = f"step {self.step + 1} (epoch {self.epoch})"
        kept = (
            f"last good checkpoint: {self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was saved yet (set trainer.checkpoint_every)"
        )
        self._log({"nonfinite_loss": value})
        raise NonFiniteLossError(
            f"training loss became {value} at {where}; stopped before that update, {kept}"
        )

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
            if self.acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            self._save_pretrained(tmp)
            if self.acc.is_main_process:
                ckpt.write_json_atomic(tmp / "train_summary.json", {"step": self.step, **metrics})
                ckpt.publish(tmp, target)
            self.acc.wait_for_everyone()

    def _save_final(self, metrics: dict[str, float]) -> Path:
        acc = self.acc
        final = self.run_dir / "final"
        tmp = ckpt.tmp_path(final)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        self._save_pretrained(tmp)
        if acc.is_main_process:
            tokenizer = (getattr(self.data, "info", None) or {}).get("tokenizer")
            if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
                tokenizer.save_pretrained(str(tmp))
            summary = self._summary(metrics)
            ckpt.write_json_atomic(tmp / "train_summary.json", summary)
            ckpt.publish(tmp, final)
            ckpt.write_json_atomic(self.run_dir / "train_summary.json", summary)
            plot_loss_curve(
                self.history, self.run_dir / "loss_curve.png", title=f"{self.name} ({self.task.name})"
            )
        acc.wait_for_everyone()
        return final

    def _summary(self, metrics: dict[str, float]) -> dict[str, Any]:
        train_losses = [r["loss"] for r in self.history if "loss" in r]
        unwrapped = self.acc.unwrap_model(self.model)
        return {
            "model": self.name,
            "task": self.task.name,
            "steps": self.step,
            "samples_seen": self.samples_seen,
            "epochs": self.epoch + self.epoch_samples / max(len(self.data.train), 1),
            "num_parameters": sum(p.numel() for p in unwrapped.parameters()),
            "num_processes": self.acc.num_processes,
            "device": self.acc.device.type,
            "mixed_precision": self.acc.mixed_precision,
            "train_time_s": round(self._elapsed(), 2),
            "final_train_loss": train_losses[-1] if train_losses else None,
            "final_metrics": metrics,
            "monitor": self.task.monitor,
            "best": self.best,
            "trainer": asdict(self.config),
            "optim": asdict(self.optim_config),
            "schedule": asdict(self.schedule_config),
            "config": json.loads(json.dumps(self.run_config, default=str)),
            "env": {"torch": torch.__version__, "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
        }


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
