"""Train a kanzoo model; settings are composed by Hydra from configs/ (see configs/train.yaml).

    python train.py model=kan_gpt                          # default data, CPU-sized recipe
    python train.py model=kan_unet data=nuclei trainer=gpu
    python train.py model=kan_gpt_small run_dir=runs/x trainer.resume=auto
    python train.py -m model=kan_vit,vit trainer=smoke     # Hydra multirun sweep
    accelerate launch --multi_gpu --num_processes 8 train.py model=kan_vit trainer=gpu

Settings are group=<config> and group.key=value (trainer.max_steps=200, optim.lr=3e-4, ...).
A bad setting prints one `error: ...` line naming it and exits with status 2. The last lines name
the final checkpoint (``<run_dir>/final``, from_pretrained format) and the evaluate.py command;
``runs/<model>/latest`` links to the newest finished run of that model.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from kanzoo._cli import USER_ERRORS, run_main
from kanzoo.train import cli

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from kanzoo.train import TrainingError

    run_main(cli.train_job, cfg, user_errors=(*USER_ERRORS, TrainingError))


if __name__ == "__main__":
    sys.argv = run_main(cli.prepare_argv, sys.argv, CONFIG_DIR, doc=__doc__)
    main()
