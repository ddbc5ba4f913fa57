"""The accelerate training loop: one code path for CPU, one GPU, DDP and FSDP.

Safety properties (see ``tests/train``): one writer per run directory (a lock naming the other
run), nothing deleted that the trainer did not create, resumable state without pickle
(:mod:`kanzoo.train.resume`), the model saved before the final evaluation, and no host sync in an
optimizer step unless it is a log, evaluation, checkpoint or grid-update step.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import timedelta
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
from .outputs import OutputsMixin
from .resume import CheckpointMixin
from .runguard import RunWatch, launched_by_launcher
from .sampler import ShardedBatchSampler, ShardedEvalSampler
from .tasks import get_task


class TrainingError(RuntimeError):
    """A run ended by a fault it detected (one-line message; the entry point exits with status 2)."""


class NonFiniteLossError(TrainingError):
    """The training loss or gradient became NaN/inf; the run stopped without that update."""


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


class Trainer(CheckpointMixin, OutputsMixin):
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

    #: None: skip non-finite updates on the device (no per-step host sync) exactly when the
    #: device is not the CPU and the optimizer supports it (fused AdamW); True/False force it.
    defer_nonfinite: bool | None = None

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
        self._module = model
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
        self.bar = None
        self.watch = RunWatch()

    # ------------------------------------------------------------------ setup
    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        cfg = self.config
        has_cuda = torch.cuda.is_available()
        if cfg.device == "gpu" and not has_cuda:
            raise ValueError("trainer.device=gpu but no CUDA device is visible; use trainer.device=cpu")
        cpu = cfg.device == "cpu" or not has_cuda
        _release_accelerator_state()
        timeout = timedelta(seconds=cfg.dist_timeout_s)
        acc = Accelerator(
            cpu=cpu,
            mixed_precision=resolve_mixed_precision(cfg.mixed_precision, cpu=cpu),
            kwargs_handlers=[InitProcessGroupKwargs(timeout=timeout)],
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # a process group made before this Accelerator ignores the handler: set it directly
            from torch.distributed import distributed_c10d

            setter = getattr(torch.distributed, "set_timeout", None) or getattr(
                distributed_c10d, "_set_pg_timeout", None
            )
            if setter is not None:
                setter(timeout)
        return acc

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
        self.watch.mark(self.step, "eval")
        model = self.model if self._fsdp else self._module
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
        self._open_run_dir()
        store = None
        if acc.num_processes > 1 and cfg.heartbeat_s > 0:
            from torch.distributed import distributed_c10d

            try:
                store = distributed_c10d._get_default_store()
            except (RuntimeError, AttributeError, ValueError):
                store = None
        self.watch = RunWatch(
            rank=acc.process_index,
            world_size=acc.num_processes,
            heartbeat_s=cfg.heartbeat_s,
            report=self._print,
            watch_parent=launched_by_launcher(),
            store=store,
        ).start()
        ok = False
        try:
            final = self._fit()
            ok = True
        finally:
            self.watch.stop()
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if acc.is_main_process:
                for logger in self.loggers:
                    logger.finish()
            if ok and self.lock is not None:
                self.lock.release()
            elif not ok:
                self._remove_created()  # the lock, and directories of ours left empty
        acc.wait_for_everyone()
        acc.end_training()
        return final

    def _fit(self) -> Path:
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.acc
        set_seed(cfg.seed)
        resume_from, finished = self._resume_target()
        final_dir = self.run_dir / "final"
        if acc.is_main_process:  # before anything is built: a foreign ".tmp-final" fails at once
            ckpt.remove_stale_tmp(self.ckpt_root)
            ckpt.remove_stale_tmp(self.run_dir, names=("final", "best"))
        if finished:
            self._print(f"{self.run_dir} already finished {cfg.max_steps} steps; nothing to do")
            self._print_done(final_dir)
            return final_dir
        self.sampler = ShardedBatchSampler(
            num_samples=len(self.data.train),
            batch_size=cfg.batch_size,
            world_size=acc.num_processes,
            rank=acc.process_index,
            seed=cfg.seed,
        )
        self.eval_loader = self._eval_loader()
        on_step = getattr(self.task, "on_step", None)  # a task may reshape the model (grid extension)
        if on_step is not None:
            start = ckpt.read_state(resume_from)["step"] if resume_from is not None else 0
            on_step(self._module, start, None)
        optimizer = build_optimizer(self._module, self.optim_config)
        self.model, self.optimizer = acc.prepare(self._module, optimizer)
        # A compiled wrapper for the training steps only; it shares the prepared model's parameters.
        self._train_model = torch.compile(self.model) if cfg.compile else self.model
        self.scheduler = build_scheduler(
            self.optimizer, total_steps=cfg.max_steps, schedule=self.schedule_config
        )
        self.step = self.epoch = self.epoch_samples = self.samples_seen = 0
        self.best, self.last_checkpoint, self._elapsed_before = None, None, 0.0
        # float64 accumulators on the device (no host sync until a log step); MPS lacks float64
        dtype = torch.float32 if acc.device.type == "mps" else torch.float64
        self._loss_acc = torch.zeros((), dtype=dtype, device=acc.device)
        self._steps_acc = 0
        if resume_from is not None:
            self._load_checkpoint(resume_from)
        inner = getattr(self.optimizer, "optimizer", self.optimizer)
        can_defer = getattr(inner, "_step_supports_amp_scaling", False) and acc.scaler is None
        defer = self.defer_nonfinite
        self._defer = bool(can_defer and (acc.device.type != "cpu" if defer is None else defer))
        self._bad = None
        if acc.is_main_process:
            inside = resume_from is not None and resume_from.parent.resolve() == self.ckpt_root.resolve()
            for logger in self.loggers:
                logger.start(self.history, new=cfg.resume is None or not (inside or resume_from is None))
        acc.wait_for_everyone()

        self._t0 = time.perf_counter()
        gb_step = cfg.batch_size * cfg.grad_accum_steps * acc.num_processes
        n_params = sum(p.numel() for p in self._module.parameters())
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
        except RuntimeError as err:
            if acc.num_processes > 1 and _is_timeout(err):
                line = " ".join(str(err).split())[:200]
                raise TrainingError(
                    f"a collective operation timed out after trainer.dist_timeout_s={cfg.dist_timeout_s:g} s "
                    f"in step {self.step + 1}: another process stalled or died (see any heartbeat warning "
                    f"above): {line}"
                ) from err
            raise
        if cfg.checkpoint_every and (
            self.last_checkpoint is None or self.last_checkpoint.name != ckpt.checkpoint_name(self.step)
        ):
            self._save_checkpoint()
        final = self._save_final_model()  # before the final evaluation: a failure there loses nothing
        try:
            metrics = self.evaluate()
        except Exception:
            self._print(f"the final evaluation failed; the trained model is saved in {final}")
            raise
        if metrics:
            self._log(metrics)
            self._print(f"final ({self.step} steps): " + _fmt(metrics))
            self._maybe_save_best(metrics)
        self._write_summary(final, metrics)
        self.bar.close()
        self.bar = None
        self._print_done(final)
        return final

    def _loop(self) -> None:
        cfg, acc, task = self.config, self.acc, self.task
        model, optimizer, scheduler = self._train_model, self.optimizer, self.scheduler
        model.train()
        units_acc = 0
        t_last = time.perf_counter()
        grid_until = cfg.grid_update_until if cfg.grid_update_until is not None else cfg.max_steps // 2
        on_step = getattr(task, "on_step", None)
        while self.step < cfg.max_steps:
            self.watch.mark(self.step, "data")
            loss_sum = None
            for micro in range(cfg.grad_accum_steps):
                batch = self._next_batch()
                last = micro == cfg.grad_accum_steps - 1
                with contextlib.nullcontext() if last else acc.no_sync(self.model):
                    self.watch.mark(self.step, "forward")
                    loss = task.loss(model, batch)
                    self.watch.mark(self.step, "backward")  # DDP all-reduces gradients in here
                    acc.backward(loss / cfg.grad_accum_steps)
                part = loss.detach().float()
                loss_sum = part if loss_sum is None else loss_sum + part
                units_acc += task.count(batch) * acc.num_processes
                self.samples_seen += cfg.batch_size * acc.num_processes
            step_loss = loss_sum / cfg.grad_accum_steps  # this process's, on the device
            self.watch.mark(self.step, "optimizer")
            grad_norm = None
            if cfg.clip_grad_norm:
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            elif cfg.detect_nonfinite and acc.num_processes > 1 and acc.scaler is None:
                # the (all-reduced) gradient norm is the same on every process: all stop together
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), math.inf)
            if cfg.detect_nonfinite:
                self._guard(step_loss, grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self._loss_acc += step_loss.to(self._loss_acc.dtype)
            self._steps_acc += 1
            if on_step is not None:
                on_step(acc.unwrap_model(self.model), self.step, optimizer)
            self.bar.update(1)

            if cfg.grid_update_every and self.step % cfg.grid_update_every == 0 and self.step <= grid_until:
                self._grid_update(batch)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.watch.mark(self.step, "log")  # the one host sync of a log step is below
                self._raise_deferred_nonfinite()
                now = time.perf_counter()
                loss_mean = acc.reduce(self._loss_acc.clone(), "mean").item() / self._steps_acc
                metrics = {
                    "loss": loss_mean,
                    "lr": scheduler.get_last_lr()[0],
                    f"{task.unit}_per_s": units_acc / max(now - t_last, 1e-9),
                    "epoch": self.epoch + self.epoch_samples / max(len(self.data.train), 1),
                }
                if grad_norm is not None and cfg.clip_grad_norm:
                    metrics["grad_norm"] = float(grad_norm)
                self._log(metrics)
                self.bar.set_postfix(
                    loss=f"{metrics['loss']:.4f}",
                    lr=f"{metrics['lr']:.2e}",
                    **{f"{task.unit}/s": f"{metrics[f'{task.unit}_per_s']:.0f}"},
                    refresh=False,
                )
                self._loss_acc.zero_()
                self._steps_acc, units_acc, t_last = 0, 0, now
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self._raise_deferred_nonfinite()
                metrics = self.evaluate()
                if metrics:
                    self._log(metrics)
                    self._print(f"step {self.step}: " + _fmt(metrics))
                    self._maybe_save_best(metrics)
                t_last = time.perf_counter()  # keep evaluation out of the throughput
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._raise_deferred_nonfinite()
                self._save_checkpoint()
                t_last = time.perf_counter()
        self._raise_deferred_nonfinite()

    def _guard(self, step_loss: torch.Tensor, grad_norm: Any) -> None:
        """Stop (or, deferred, skip on the device) an update whose loss or gradient is not finite."""
        ok = torch.isfinite(step_loss)
        if torch.is_tensor(grad_norm) and self.acc.scaler is None:  # fp16 overflow steps are the scaler's
            ok = ok & torch.isfinite(grad_norm)
        if self._defer:
            inner = getattr(self.optimizer, "optimizer", self.optimizer)
            bad = (~ok).to(torch.float32)
            inner.found_inf = bad  # the fused kernel skips the whole update when it is 1
            record = torch.stack([step_loss.float(), _as_float(grad_norm, step_loss), bad])
            step = torch.tensor(float(self.step + 1), device=bad.device)
            if self._bad is None:
                self._bad = torch.full((4,), -1.0, device=bad.device)
            first = (self._bad[0] < 0) & (bad > 0)
            self._bad = torch.where(first, torch.cat([step[None], record]), self._bad)
            return
        if not bool(ok):
            self.optimizer.zero_grad(set_to_none=True)
            self._on_nonfinite(step_loss.item(), _value(grad_norm), self.step + 1, skipped=False)

    def _raise_deferred_nonfinite(self) -> None:
        if self._defer and self._bad is not None:
            step, loss, norm, _ = self._bad.tolist()
            if step > 0:
                self._on_nonfinite(loss, norm, int(step), skipped=True)

    def _grid_update(self, batch: dict[str, Any]) -> None:
        acc = self.acc
        if self._fsdp:
            return  # sharded parameters cannot be refit layer by layer
        unwrapped = self._module
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

    def _on_nonfinite(self, loss: float, grad_norm: float | None, step: int, *, skipped: bool) -> None:
        where = f"step {step} (epoch {self.epoch})"
        what = f"training loss became {loss}"
        if math.isfinite(loss) and grad_norm is not None and not math.isfinite(grad_norm):
            what = f"the gradient norm became {grad_norm} (loss {loss:.4g})"
        kept = (
            f"last good checkpoint: {self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was saved yet (set trainer.checkpoint_every)"
        )
        causes = []
        lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        if not all(math.isfinite(lr) for lr in lrs):
            causes.append(f"the learning rate is {lrs} (check optim.lr and optim.schedule)")
        if not all(bool(torch.isfinite(p).all()) for p in self._module.parameters()):
            causes.append("the weights were already non-finite (an earlier update diverged: lower optim.lr)")
        how = (
            f"non-finite updates were skipped on the device and the run stopped at step {self.step}"
            if skipped
            else "stopped before that update"
        )
        self._log({"nonfinite_loss": loss})
        raise NonFiniteLossError(
            f"{what} at {where}; {how}, {kept}" + (f"; cause: {'; '.join(causes)}" if causes else "")
        )


def _is_timeout(err: BaseException) -> bool:
    dist_error = getattr(torch.distributed, "DistBackendError", ())
    text = str(err).lower()
    return isinstance(err, dist_error) or "timed out" in text or "timeout" in text


def _value(x: Any) -> float | None:
    if x is None:
        return None
    return float(x.item()) if torch.is_tensor(x) else float(x)


def _as_float(x: Any, like: torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(x):
        return x.detach().float().reshape(())
    return torch.full((), float("nan") if x is None else float(x), device=like.device)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
