"""Evaluate a checkpoint: metrics table, metrics.json, report.md and pictures.

    python evaluate.py checkpoint=runs/kan_unet/<time>/final                  # data recorded with it
    python evaluate.py checkpoint=runs/kan_unet/<time>/final data=busi protocol=ukan
    python evaluate.py checkpoint=runs/kan_unet/<time>/final data=busi compare=runs/unet/<time>/final
    python evaluate.py checkpoint=kan_gpt-shakespeare                         # a shipped checkpoint
    python evaluate.py --help                                                 # every setting

Settings are key=value overrides of configs/eval.yaml; data=<config> picks configs/data/<config>.yaml
and data.<key>=<value> sets its fields (the checkpoint's preprocessing is kept unless set here).
A problem with the input prints one "error: ..." line and exits with status 2. The logic lives in
kanzoo.eval (kanzoo.eval.cli, kanzoo.eval.runner), usable without this script.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def main(argv: list[str] | None = None) -> int:
    from kanzoo.eval.cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else list(argv), config_dir=CONFIG_DIR)


if __name__ == "__main__":
    from kanzoo._cli import run_main

    sys.exit(run_main(main))
