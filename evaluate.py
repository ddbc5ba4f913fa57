"""Evaluate a checkpoint: metrics table, metrics.json, report.md and pictures.

    python evaluate.py checkpoint=runs/kan_unet/final data=shapes
    python evaluate.py checkpoint=runs/kan_unet/final data=busi protocol=ukan
    python evaluate.py checkpoint=runs/kan_unet/final data=busi compare=runs/unet/final split=test
    python evaluate.py checkpoint=runs/kan_gpt/final          # data recorded with the checkpoint

Options (configs/eval.yaml): split=val|test, output_dir=PATH, protocol=per_image|ukan,
threshold=0.5, resolution=original|train, compare=<checkpoint>, batch_size, device, max_samples.
The logic lives in kanzoo.eval.runner (usable without Hydra).
"""

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("WANDB_MODE", "disabled")


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from kanzoo.eval.runner import evaluate, print_summary

    if cfg.get("checkpoint") in (None, "", "???"):
        sys.exit("evaluate.py: give checkpoint=<directory | shipped name | hub id>")
    data = cfg.get("data")
    data = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else data
    try:
        result = evaluate(
            str(cfg.checkpoint),
            data,
            split=cfg.split,
            output_dir=cfg.output_dir,
            protocol=cfg.protocol,
            threshold=float(cfg.threshold),
            resolution=cfg.resolution,
            compare=None if cfg.compare is None else str(cfg.compare),
            batch_size=int(cfg.batch_size),
            num_overlays=int(cfg.num_overlays),
            device=str(cfg.device),
            hd95_convention=cfg.hd95_convention,
            compute_hd95=bool(cfg.compute_hd95),
            max_samples=cfg.max_samples,
            progress=bool(cfg.progress),
        )
    except (ValueError, FileNotFoundError, OSError, TypeError) as err:
        sys.exit(f"evaluate.py: {type(err).__name__}: {err}")
    print_summary(result)


if __name__ == "__main__":
    main()
