"""Run the Trainer on a toy task from the command line (used by the DDP and kill/resume tests).

python tests/train/toy_run.py --task classification --run-dir DIR [--steps N] ...
accelerate launch --multi_gpu --num_processes 2 tests/train/toy_run.py --device cpu ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toys import toy_data, toy_model  # noqa: E402

from kanzoo.train import OptimConfig, ScheduleConfig, Trainer, TrainerConfig, build_loggers  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="classification")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--resume", default=None)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds of sleep per LM forward")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--stall-rank", type=int, default=None, help="this rank sleeps --stall-s in a forward")
    p.add_argument("--stall-at", type=int, default=3, help="... of this (1-based) optimizer step")
    p.add_argument("--stall-s", type=float, default=0.0)
    p.add_argument("--dist-timeout", type=float, default=600.0)
    p.add_argument("--heartbeat", type=float, default=60.0)
    p.add_argument("--pid-dir", default=None, help="write <rank>.pid here once training runs")
    args = p.parse_args(argv)

    kw = {}
    if args.task == "lm":
        kw = {"sleep": args.sleep, "dropout": args.dropout}
    config = TrainerConfig(
        run_dir=args.run_dir,
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum_steps=args.accum,
        log_every=args.log_every,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=2,
        resume=args.resume,
        device=args.device,
        progress=False,
        seed=3,
        dist_timeout_s=args.dist_timeout,
        heartbeat_s=args.heartbeat,
    )
    trainer = ToyTrainer(
        model=toy_model(args.task, **kw),
        data=toy_data(args.task),
        optim=OptimConfig(lr=5e-3, weight_decay=0.1),
        schedule=ScheduleConfig(warmup_steps=3),
        config=config,
        loggers=build_loggers({"jsonl": None}, run_dir=args.run_dir),
        name=f"toy_{args.task}",
    )
    trainer.toy_args = args
    trainer.fit()
    if trainer.world["rank"] == 0:
        info = {"world_size": trainer.world["size"], "env_world_size": os.environ.get("WORLD_SIZE")}
        Path(args.run_dir, "world.json").write_text(json.dumps(info))


class ToyTrainer(Trainer):
    """Records the process group as torch sees it (accelerate's end_training tears it down after
    fit) and injects the faults the tests ask for: a stalled rank, pid files."""

    def _loop(self):
        import torch.distributed as dist

        args = self.toy_args
        initialized = dist.is_available() and dist.is_initialized()
        self.world = {
            "size": dist.get_world_size() if initialized else 1,
            "rank": dist.get_rank() if initialized else 0,
        }
        if args.pid_dir:
            Path(args.pid_dir).mkdir(parents=True, exist_ok=True)
            Path(args.pid_dir, f"{self.world['rank']}.pid").write_text(str(os.getpid()))
        if args.stall_rank is not None and self.world["rank"] == args.stall_rank:
            forward, trainer = self._module.forward, self

            def stalling_forward(*a, **k):
                if trainer.step + 1 == args.stall_at and args.stall_s:
                    time.sleep(args.stall_s)
                return forward(*a, **k)

            self._module.forward = stalling_forward
        return super()._loop()


if __name__ == "__main__":
    from kanzoo._cli import USER_ERRORS, run_main
    from kanzoo.train import TrainingError

    run_main(main, user_errors=(*USER_ERRORS, TrainingError))
