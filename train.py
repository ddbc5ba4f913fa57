"""Train a kanzoo model; settings are composed by Hydra from configs/ (see configs/train.yaml).

    python train.py model=kan_gpt                          # default data, CPU-sized recipe
    python train.py model=kan_unet data=nuclei trainer=gpu
    python train.py model=kan_gpt_small run_dir=runs/x trainer.resume=auto
    python train.py -m model=kan_vit,vit trainer=smoke     # Hydra multirun sweep
    accelerate launch --multi_gpu --num_processes 8 train.py model=kan_vit trainer=gpu

The last line printed names the final checkpoint (``<run_dir>/final``, from_pretrained format).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kanzoo.train.cli import normalize_overrides, one_line

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from kanzoo.train import NonFiniteLossError
    from kanzoo.train.build import build_trainer

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        trainer = build_trainer(resolved, run_dir=HydraConfig.get().runtime.output_dir)
        trainer.fit()
    except (ValueError, FileNotFoundError, NonFiniteLossError, OmegaConfBaseException) as err:
        print(one_line(err), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        sys.argv[1:] = normalize_overrides(sys.argv[1:], CONFIG_DIR)
    except ValueError as err:
        print(one_line(err), file=sys.stderr)
        sys.exit(1)
    main()
