"""Training-step throughput of every KAN model family against its parameter-matched twin, ONE run.

    python benchmarks/models.py                       # tiny variant of every family
    python benchmarks/models.py --models kan_vit_tiny conv_kan_tiny --batch-size 64
    python benchmarks/models.py --threads 1 --timer cpu   # as taken on a busy shared machine
    python benchmarks/models.py --device cuda --dtype bf16

The step is the one the trainer runs (``kanzoo.train.trainer``): the task's loss
(``kanzoo.train.tasks.get_task``), backward, gradient clipping to norm 1 and an AdamW step over
the role-based parameter groups (``kanzoo.train.optim.build_optimizer``). Inputs are random
tensors of each model's configured input shape (images, masks, token ids, lookback/horizon
windows, formula inputs, Poisson collocation and boundary points); the data pipeline is not
timed. A KAN model and its twin are timed interleaved (A, B, A, B, ...), so load from other
processes hits both alike; the table reports median ms per step, samples/s and
``KAN samples/s / twin samples/s`` (the issue's target: >= 0.8).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine_line, markdown_table, n_params  # noqa: E402

DEFAULT_MODELS = (
    "conv_kan_tiny", "kan_vit_tiny", "kan_unet_tiny", "kan_gpt_nano", "kan_tsf_tiny", "kan_fit_tiny",
    "kan_pinn_tiny",
)  # fmt: skip


#: Batch sizes of the families' training recipes (``recipe.batch_size`` in configs/model/*.yaml)
#: where they differ from 32: formula fitting trains on 1000 points, the PINN on 256.
RECIPE_BATCH = {"regression": 1000, "pde": 256}


def make_batch(model: torch.nn.Module, task: str, batch_size: int, *, seq_len: int, device) -> dict:
    """Random inputs of the model's configured shape for ``task``."""
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    if task == "forecasting":
        past = torch.randn(batch_size, cfg.lookback, cfg.num_channels, generator=gen)
        future = torch.randn(batch_size, cfg.horizon, cfg.num_channels, generator=gen)
        return {"past_values": past.to(device), "future_values": future.to(device)}
    if task == "regression":
        x = torch.rand(batch_size, cfg.in_features, generator=gen) * 2 - 1
        return {"x": x.to(device), "y": torch.randn(batch_size, cfg.out_features, generator=gen).to(device)}
    if task == "pde":  # the 2-D Poisson problem: interior collocation points + boundary points
        coords = torch.rand(batch_size, cfg.in_features, generator=gen) * 2 - 1
        edge = torch.rand(batch_size, cfg.in_features, generator=gen) * 2 - 1
        edge[:, 0] = torch.where(edge[:, 0] > 0, 1.0, -1.0)
        return {
            "pde": "poisson",
            "coords": coords.to(device),
            "boundary_coords": edge.to(device),
            "boundary_values": torch.zeros(batch_size, cfg.out_features).to(device),
            "boundary_weight": 1.0,
        }
    if task == "lm":
        ids = torch.randint(0, cfg.vocab_size, (batch_size, min(seq_len, cfg.n_positions)), generator=gen)
        return {"input_ids": ids.to(device), "labels": ids.to(device)}
    size = cfg.img_size if isinstance(cfg.img_size, (tuple, list)) else (cfg.img_size, cfg.img_size)
    x = torch.randn(batch_size, cfg.in_chans, *size, generator=gen).to(device)
    if task == "classification":
        return {
            "pixel_values": x,
            "labels": torch.randint(0, cfg.num_classes, (batch_size,), generator=gen).to(device),
        }
    k = max(int(cfg.num_classes), 2)
    return {"pixel_values": x, "mask": torch.randint(0, k, (batch_size, *size), generator=gen).to(device)}


def train_step(model, task, optimizer, batch, *, clip: float, autocast: contextlib.AbstractContextManager):
    """One optimizer step exactly as the trainer takes it (loss, backward, clip, AdamW)."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = task.loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if batch_device(batch).type == "cuda":
            torch.cuda.synchronize()

    return step


def batch_device(batch: dict) -> torch.device:
    return next(v for v in batch.values() if torch.is_tensor(v)).device


def pairs(names) -> list[tuple[str, str, str]]:
    """``(KAN model, matched twin, task)`` for each KAN model name (ValueError for an unknown one)."""
    from kanzoo.models._registry import model_info

    out = []
    for name in names:
        info = model_info(name)
        twin = info["matched_twin"] or info["twin"]
        if twin is None:
            raise ValueError(f"--models: {name!r} has no registered twin")
        out.append((info["name"], twin, info["task"]))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="KAN model names")
    p.add_argument(
        "--batch-size", type=int, default=None,
        help="samples per step (default: the family's recipe batch size, see RECIPE_BATCH)",
    )  # fmt: skip
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (language models)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timer", choices=("wall", "cpu"), default="wall")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast")
    p.add_argument(
        "--keep-freed-memory", action="store_true",
        help="kanzoo.layers.keep_freed_memory() before timing (glibc: no page faults for blocks > 32 MiB)",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from kanzoo.layers import keep_freed_memory

    kept = keep_freed_memory() if args.keep_freed_memory else False
    import kanzoo
    from kanzoo.train.config import OptimConfig
    from kanzoo.train.optim import build_optimizer
    from kanzoo.train.tasks import get_task

    device = torch.device(args.device)
    rows = []
    for kan, twin, task_name in pairs(args.models):
        task = get_task(task_name)
        bs = args.batch_size or RECIPE_BATCH.get(task_name, 32)
        steps, info = {}, {}
        for name in (kan, twin):
            torch.manual_seed(0)
            model = kanzoo.create_model(name).to(device).train()
            opt = build_optimizer(model, OptimConfig(lr=1e-4, weight_decay=0.05))
            batch = make_batch(model, task_name, bs, seq_len=args.seq_len, device=device)
            ac = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
            steps[name] = train_step(model, task, opt, batch, clip=1.0, autocast=ac)
            info[name] = n_params(model)
        ms = interleaved(steps, reps=args.reps, warmup=args.warmup, timer=args.timer)
        sps = {n: bs / (ms[n] / 1e3) for n in ms}
        ratio = sps[kan] / sps[twin]
        rows.append((kan, twin, bs, info[kan], info[twin], ms[kan], ms[twin], sps[kan], sps[twin], ratio))
        print(f"{kan}: {ms[kan]:.1f} ms, {twin}: {ms[twin]:.1f} ms", file=sys.stderr, flush=True)
    header = ("KAN model", "twin", "batch", "KAN params", "twin params", "KAN ms/step", "twin ms/step",
              "KAN samples/s", "twin samples/s", "KAN/twin samples/s")  # fmt: skip
    extra = f"{args.dtype}, device {args.device}, keep_freed_memory={kept}"
    text = machine_line(timer=args.timer, extra=extra) + "\n\n" + markdown_table(header, rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
