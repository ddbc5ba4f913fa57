"""Training: an accelerate trainer that takes built objects (no Hydra in here).

```python
from kanzoo.train import Trainer, TrainerConfig, OptimConfig, ScheduleConfig
final_dir = Trainer(model=model, data=dm, config=TrainerConfig(run_dir="runs/x", max_steps=200)).fit()
```
"""

from .checkpoint import latest_checkpoint, list_checkpoints
from .config import OptimConfig, ScheduleConfig, TrainerConfig
from .grid import grid_modules, update_grids
from .loggers import JsonlLogger, Logger, WandbLogger, build_loggers, read_jsonl
from .optim import build_optimizer, build_scheduler, classify_parameters, lr_factor, param_groups
from .outputs import CheckpointWriteError, RunDirError
from .plots import plot_loss_curve
from .runguard import RunDirBusyError
from .state import CheckpointError
from .tasks import get_task
from .trainer import NonFiniteLossError, Trainer, TrainingError, resolve_mixed_precision

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "RunDirBusyError",
    "RunDirError",
    "TrainingError",
    "JsonlLogger",
    "Logger",
    "NonFiniteLossError",
    "OptimConfig",
    "ScheduleConfig",
    "Trainer",
    "TrainerConfig",
    "WandbLogger",
    "build_loggers",
    "build_optimizer",
    "build_scheduler",
    "classify_parameters",
    "get_task",
    "grid_modules",
    "latest_checkpoint",
    "list_checkpoints",
    "lr_factor",
    "param_groups",
    "plot_loss_curve",
    "read_jsonl",
    "resolve_mixed_precision",
    "update_grids",
]
