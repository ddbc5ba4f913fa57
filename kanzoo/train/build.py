"""Build a training run from a plain (already resolved) configuration dict.

``train.py`` composes the YAML with Hydra and hands the resolved dict here; this module knows
nothing of Hydra. Layout of the dict (see ``configs/``)::

    model:   {name, task, from_data: {model_kwarg: info_key}, **create_model kwargs}
    data:    {name, **build_data kwargs}
    trainer: TrainerConfig fields (run_dir is passed separately)
    optim:   OptimConfig fields + schedule: ScheduleConfig fields
    logger:  {kind: kwargs} or None
    seed:    int
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from .config import OptimConfig, ScheduleConfig, SettingError, TrainerConfig, check_value
from .loggers import build_loggers, check_logger_spec
from .trainer import Trainer

_DATA_FOR_TASK = {
    "lm": "shakespeare, pydoc, text",
    "classification": "digits, image_folder, hf_image",
    "segmentation": "shapes, nuclei, segmentation_folder, hf_segmentation",
    "forecasting": "elnino, sunspots, co2, nile, macrodata, timeseries_file, hf_timeseries",
    "regression": "feynman",
    "pde": "poisson, heat",
}


def data_derived_info(dm: Any) -> dict[str, Any]:
    """``dm.info`` plus derived keys model configs can map from.

    ``num_outputs``: output channels of a segmentation head (1 for binary masks, i.e.
    ``num_classes == 2``, else ``num_classes``); for classification it equals ``num_classes``.
    """
    info = dict(getattr(dm, "info", None) or {})
    if "num_classes" in info:
        n = int(info["num_classes"])
        info["num_outputs"] = 1 if dm.task == "segmentation" and n == 2 else n
    if "image_size" in info and isinstance(info["image_size"], (list, tuple)):
        info["image_size"] = int(info["image_size"][0])
    return info


def build_model_and_data(cfg: dict[str, Any]) -> tuple[str, torch.nn.Module, Any]:
    """Create the data module and the model (sized from the data) described by ``cfg``.

    Returns:
        ``(model_name, model, data_module)``.

    Raises:
        ValueError: unknown model/data names (with suggestions), task mismatches, bad kwargs.
        FileNotFoundError: a data path that does not exist.
    """
    from kanzoo.data import build_data
    from kanzoo.models import create_model, model_info

    model_cfg = copy.deepcopy(dict(cfg["model"]))
    data_cfg = copy.deepcopy(dict(cfg["data"]))
    name = model_cfg.pop("name")
    yaml_task = model_cfg.pop("task", None)
    from_data = model_cfg.pop("from_data", None) or {}
    meta = model_info(name)  # unknown name -> ValueError naming the closest models
    task = meta.get("task") or yaml_task
    if yaml_task and meta.get("task") and yaml_task != meta["task"]:
        raise ValueError(
            f"model.name={name} is a {meta['task']} model but the selected model config is for {yaml_task}; "
            f"select its family config, e.g. model={meta.get('family', name)} model.name={name}"
        )
    data_name = data_cfg.pop("name")
    dm = build_data(data_name, **data_cfg)
    if dm.task != task:
        raise ValueError(
            f"model {name} trains on {task} data but data={data_name} is a {dm.task} dataset; "
            f"choose one of: {_DATA_FOR_TASK.get(task, '?')}"
        )
    info = data_derived_info(dm)
    kwargs = dict(model_cfg)
    for kwarg, key in from_data.items():
        if key not in info:
            raise ValueError(
                f"model.from_data maps {kwarg!r} to info key {key!r}, which data={data_name} lacks"
            )
        kwargs.setdefault(kwarg, info[key])
    torch.manual_seed(check_value("seed", cfg.get("seed", 0), "int", lo=0, hi=2**32 - 1))  # same init
    try:
        model = create_model(name, **kwargs)
    except TypeError as err:  # e.g. an unknown keyword from model.<key>=...
        raise ValueError(f"cannot create model {name} with {sorted(kwargs)}: {err}") from err
    return name, model, dm


def check_run_settings(
    cfg: dict[str, Any], *, run_dir: str | Path
) -> tuple[TrainerConfig, OptimConfig, ScheduleConfig, dict[str, Any]]:
    """Validate the trainer, optim, schedule and logger sections (no data or model is built).

    Raises:
        ValueError: one line naming the first bad setting.
    """
    seed = check_value("seed", cfg.get("seed", 0), "int", lo=0, hi=2**32 - 1)
    for group in ("trainer", "optim"):
        if cfg.get(group) is not None and not isinstance(cfg.get(group), dict):
            raise SettingError(f"{group} must be a mapping of settings, got {cfg[group]!r:.60}")
    trainer_cfg = dict(cfg.get("trainer") or {})
    trainer_cfg["run_dir"] = str(run_dir)
    trainer_cfg.setdefault("seed", seed)
    config = TrainerConfig.from_dict(trainer_cfg)
    optim_cfg = dict(cfg.get("optim") or {})
    schedule = ScheduleConfig.from_dict(optim_cfg.pop("schedule", None))
    optim = OptimConfig.from_dict(optim_cfg)
    return config, optim, schedule, check_logger_spec(cfg.get("logger") or {})


def build_trainer(cfg: dict[str, Any], *, run_dir: str | Path) -> Trainer:
    """A ready :class:`Trainer` for the resolved run configuration ``cfg``.

    Settings are validated before any data or model is built, so a typo fails in a second.
    """
    config, optim, schedule, logger_spec = check_run_settings(cfg, run_dir=run_dir)
    name, model, dm = build_model_and_data(cfg)
    loggers = build_loggers(logger_spec, run_dir=run_dir)
    return Trainer(
        model=model,
        data=dm,
        optim=optim,
        schedule=schedule,
        config=config,
        loggers=loggers,
        run_config=cfg,
        name=name,
    )
