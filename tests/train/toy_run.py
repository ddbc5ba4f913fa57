"""Run the Trainer on a toy task from the command line (used by the DDP and kill/resume tests).

python tests/train/toy_run.py --task classification --run-dir DIR [--steps N] ...
accelerate launch --multi_gpu --num_processes 2 tests/train/toy_run.py --device cpu ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    args = p.parse_args(argv)

    kw = {}
    if args.task == "lm":
        kw = {"sleep": args.sleep, "dropout": args.dropout}
    config = TrainerConfig(
        run_dir=args.run_dir,
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum_steps=args.accum,
        log_every=1,
        eval_every=5,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=2,
        resume=args.resume,
        device=args.device,
        progress=False,
        seed=3,
    )
    trainer = Trainer(
        model=toy_model(args.task, **kw),
        data=toy_data(args.task),
        optim=OptimConfig(lr=5e-3, weight_decay=0.1),
        schedule=ScheduleConfig(warmup_steps=3),
        config=config,
        loggers=build_loggers({"jsonl": None}, run_dir=args.run_dir),
        name=f"toy_{args.task}",
    )
    # The process group as torch sees it (accelerate's end_training tears it down after fit).
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=args.device == "cpu")
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    trainer.fit()
    if rank == 0:
        info = {"world_size": world, "env_world_size": os.environ.get("WORLD_SIZE")}
        Path(args.run_dir, "world.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
