"""Training: an accelerate trainer that takes built objects (no Hydra in here).

```python
from kanzoo.train import Trainer, TrainerConfig, OptimConfig, ScheduleConfig
final_dir = Trainer(model=model, data=dm, config=TrainerConfig(run_dir="runs/x", max_steps=200)).fit()
```

Names are imported on first use (PEP 562); the trainer needs the ``[train]`` extra.
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "latest_checkpoint": ".checkpoint",
    "list_checkpoints": ".checkpoint",
    "OptimConfig": ".config",
    "ScheduleConfig": ".config",
    "TrainerConfig": ".config",
    "grid_modules": ".grid",
    "update_grids": ".grid",
    "JsonlLogger": ".loggers",
    "Logger": ".loggers",
    "WandbLogger": ".loggers",
    "build_loggers": ".loggers",
    "read_jsonl": ".loggers",
    "build_optimizer": ".optim",
    "build_scheduler": ".optim",
    "classify_parameters": ".optim",
    "lr_factor": ".optim",
    "param_groups": ".optim",
    "CheckpointWriteError": ".outputs",
    "RunDirError": ".outputs",
    "plot_loss_curve": ".plots",
    "RunDirBusyError": ".runguard",
    "CheckpointError": ".state",
    "get_task": ".tasks",
    "NonFiniteLossError": ".trainer",
    "Trainer": ".trainer",
    "TrainingError": ".trainer",
    "resolve_mixed_precision": ".trainer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(__name__, _EXPORTS)
