"""Compose and instantiate every training YAML (configs/train.yaml and its groups)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kanzoo.train import OptimConfig, ScheduleConfig, TrainerConfig, build_loggers
from kanzoo.train.build import build_model_and_data, build_trainer
from kanzoo.train.cli import config_options, normalize_overrides

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Benchmark data configs (BUSI, GlaS, ...) belong to evaluation and need downloaded data.
TRAIN_DATA = [
    "shakespeare",
    "pydoc",
    "text",
    "digits",
    "image_folder",
    "shapes",
    "nuclei",
    "segmentation_folder",
    "elnino",
    "sunspots",
    "co2",
    "nile",
    "macrodata",
    "feynman",
    "poisson",
    "heat",
]
MODELS = config_options(CONFIG_DIR, "model")


def _compose(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=False)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_every_family_and_twin_has_a_model_config():
    assert set(MODELS) >= {"kan_gpt", "gpt", "conv_kan", "cnn", "kan_unet", "unet", "kan_vit", "vit"}


@pytest.mark.parametrize("model", MODELS)
def test_model_config_picks_its_registered_default_data(model):
    from kanzoo.models import model_info

    cfg = _compose([f"model={model}"])
    info = model_info(cfg["model"]["name"])
    assert cfg["model"]["task"] == info["task"]
    assert cfg["data"]["name"] == info["default_data"]
    # data=... on the command line beats the model's default
    other = "pydoc" if info["task"] == "lm" else ("nuclei" if info["task"] == "segmentation" else "digits")
    assert _compose([f"model={model}", f"data={other}"])["data"]["name"] == other


@pytest.mark.parametrize("model", MODELS)
def test_model_config_instantiates_model_and_data(model, tmp_path):
    cfg = _compose([f"model={model}", "trainer=smoke", "logger=none"])
    trainer = build_trainer(cfg, run_dir=tmp_path)
    assert trainer.config.max_steps == 3 and trainer.config.device == "cpu"
    assert trainer.task.name == cfg["model"]["task"] == trainer.data.task
    # the model is sized from the data: one forward pass on a real validation item
    item = trainer.data.val[0]
    trainer.model.eval()
    with torch.no_grad():
        if trainer.data.task == "lm":
            out = trainer.model(input_ids=item["input_ids"][None, :16])
            assert out.logits.shape[-1] == trainer.data.info["vocab_size"]
        elif trainer.data.task in ("forecasting", "regression", "pde"):
            key = {"forecasting": "past_values", "regression": "x", "pde": "coords"}[trainer.data.task]
            target = {"forecasting": "future_values", "regression": "y", "pde": "target"}[trainer.data.task]
            out = trainer.model(item[key][None])
            assert out.shape == item[target][None].shape and torch.isfinite(out).all()
        else:
            out = trainer.model(item["pixel_values"][None])
            if trainer.data.task == "classification":
                assert out.shape == (1, trainer.data.info["num_classes"])
            else:
                assert out.shape[-2:] == item["mask"].shape[-2:]


def _write_images(root: Path, *, masks: bool) -> None:
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for i in range(6):
        arr = (torch.rand(20, 20, 3, generator=rng) * 255).to(torch.uint8).numpy()
        if masks:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / "images" / f"im{i}.png")
            mask = ((arr[..., 0] > 127) * 255).astype("uint8")
            Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        else:
            (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / f"class{i % 2}" / f"im{i}.png")


@pytest.mark.parametrize("data", TRAIN_DATA)
def test_data_config_instantiates(data, tmp_path):
    extra = []
    if data == "text":
        (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 80)
        extra = [f"data.path_or_hub_name={tmp_path / 'corpus.txt'}", "data.block_size=16"]
    elif data == "image_folder":
        _write_images(tmp_path / "imgs", masks=False)
        extra = [f"data.path={tmp_path / 'imgs'}", "data.image_size=16", "data.val_fraction=0.34"]
    elif data == "segmentation_folder":
        _write_images(tmp_path / "seg", masks=True)
        extra = [f"data.root={tmp_path / 'seg'}", "data.image_size=16", "data.layout=generic"]
    elif data == "shapes":
        extra = ["data.num_train=8", "data.num_val=4", "data.num_test=4"]
    task_model = {
        "shakespeare": "kan_gpt",
        "pydoc": "gpt",
        "text": "kan_gpt",
        "digits": "cnn",
        "image_folder": "conv_kan",
        "shapes": "unet",
        "nuclei": "kan_unet",
        "segmentation_folder": "unet",
        "elnino": "kan_tsf",
        "sunspots": "tsf",
        "co2": "kan_tsf",
        "nile": "tsf",
        "macrodata": "kan_tsf",
        "feynman": "kan_fit",
        "poisson": "kan_pinn",
        "heat": "pinn",
    }[data]
    cfg = _compose([f"model={task_model}", f"data={data}", "trainer=smoke", *extra])
    name, model, dm = build_model_and_data(cfg)
    assert cfg["data"]["name"] == data and len(dm.train) > 0 and len(dm.val) > 0
    assert isinstance(model, torch.nn.Module)


def test_data_config_with_missing_mandatory_path_fails_clearly():
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="data.path"):
        _compose(["model=conv_kan", "data=image_folder"])


@pytest.mark.parametrize("trainer", config_options(CONFIG_DIR, "trainer"))
@pytest.mark.parametrize("optim", config_options(CONFIG_DIR, "optim"))
def test_trainer_and_optim_configs_build(trainer, optim):
    cfg = _compose(["model=conv_kan", f"trainer={trainer}", f"optim={optim}"])
    tc = TrainerConfig.from_dict({**cfg["trainer"], "run_dir": "x"})
    optim_cfg = dict(cfg["optim"])
    schedule = ScheduleConfig.from_dict(optim_cfg.pop("schedule"))
    oc = OptimConfig.from_dict(optim_cfg)
    assert tc.max_steps >= 1 and oc.lr > 0 and schedule.name in ("cosine", "linear", "constant")
    assert tc.latest_link == "runs/conv_kan/latest"  # next to the timestamped run dirs of the model
    if trainer == "smoke":
        assert tc.max_steps <= 5 and tc.device == "cpu"
    if trainer == "gpu":
        assert tc.device == "gpu"


@pytest.mark.parametrize("logger", config_options(CONFIG_DIR, "logger"))
def test_logger_configs_build(logger, tmp_path):
    cfg = _compose(["model=conv_kan", f"logger={logger}"])
    loggers = build_loggers(cfg["logger"], run_dir=tmp_path)
    kinds = sorted(type(lg).__name__ for lg in loggers)
    expected = {"none": [], "jsonl": ["JsonlLogger"], "wandb": ["JsonlLogger", "WandbLogger"]}[logger]
    assert kinds == expected
    for lg in loggers:
        if type(lg).__name__ == "JsonlLogger":
            assert lg.path == tmp_path / "metrics.jsonl"


@pytest.mark.parametrize("experiment", config_options(CONFIG_DIR, "experiment"))
def test_experiment_configs_compose(experiment):
    cfg = _compose([f"experiment={experiment}", "model=cnn"])
    TrainerConfig.from_dict({**cfg["trainer"], "run_dir": "x"})
    assert cfg["model"]["name"] == "cnn"
    # command-line overrides still beat the experiment's pinned groups
    assert _compose([f"experiment={experiment}", "model=cnn", "data=nuclei"])["data"]["name"] == "nuclei"


def test_accelerate_configs_are_valid_yaml_for_accelerate():
    import yaml

    files = sorted((CONFIG_DIR / "accelerate").glob("*.yaml"))
    assert {f.stem for f in files} >= {"ddp", "fsdp", "multinode", "cpu_ddp"}
    for f in files:
        spec = yaml.safe_load(f.read_text())
        assert spec["distributed_type"] in ("MULTI_GPU", "FSDP")
        assert spec["num_processes"] >= 2
        if spec["distributed_type"] == "FSDP":
            assert spec["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_sized_model_names_map_to_their_family_config():
    assert normalize_overrides(["model=kan_gpt_small", "trainer=smoke"], CONFIG_DIR) == [
        "model=kan_gpt",
        "trainer=smoke",
        "model.name=kan_gpt_small",
    ]
    assert normalize_overrides(["model=unet_small_matched"], CONFIG_DIR) == [
        "model=unet",
        "model.name=unet_small_matched",
    ]
    assert normalize_overrides(["-m", "model=kan_vit,vit"], CONFIG_DIR) == ["-m", "model=kan_vit,vit"]


def test_sweeps_over_sized_names_of_one_family_become_a_model_name_sweep():
    assert normalize_overrides(["-m", "model=kan_gpt_mini,kan_gpt_small", "seed=0,1"], CONFIG_DIR) == [
        "-m",
        "model=kan_gpt",
        "seed=0,1",
        "model.name=kan_gpt_mini,kan_gpt_small",
    ]
    with pytest.raises(ValueError, match=r"mixes families.*model=kan_gpt model.name=kan_gpt_small"):
        normalize_overrides(["-m", "model=kan_gpt_small,gpt_small"], CONFIG_DIR)
    with pytest.raises(ValueError, match=r"unknown model 'gpt_smal'"):
        normalize_overrides(["-m", "model=kan_gpt,gpt_smal"], CONFIG_DIR)


def test_matched_twins_have_model_configs_so_sweeps_can_mix_them():
    sweep = ["-m", "model=kan_gpt,gpt_nano_matched", "seed=0,1"]
    assert normalize_overrides(sweep, CONFIG_DIR) == sweep
    for twin, family in [
        ("gpt_nano_matched", "gpt"),
        ("cnn_tiny_matched", "cnn"),
        ("vit_tiny_matched", "vit"),
        ("unet_tiny_matched", "unet"),
    ]:
        cfg, base = _compose([f"model={twin}"]), _compose([f"model={family}"])
        assert cfg["model"]["name"] == twin
        # same data and recipe as the family config: only the model name differs
        for c in (cfg, base):  # output paths are named after the model
            c["trainer"].pop("latest_link")
        assert {**cfg, "model": None, "run_dir": None} == {**base, "model": None, "run_dir": None}


def test_unknown_model_and_data_names_fail_with_suggestions():
    with pytest.raises(ValueError, match=r"unknown model 'kan_vitt'.*did you mean.*kan_vit"):
        normalize_overrides(["model=kan_vitt"], CONFIG_DIR)
    with pytest.raises(ValueError, match=r"unknown data 'shakespear'.*did you mean shakespeare"):
        normalize_overrides(["data=shakespear"], CONFIG_DIR)


def test_model_name_of_another_task_is_rejected(tmp_path):
    cfg = _compose(["model=kan_gpt", "model.name=kan_vit_tiny", "trainer=smoke"])
    with pytest.raises(ValueError, match="classification model but the selected model config is for lm"):
        build_trainer(cfg, run_dir=tmp_path)


def test_data_of_another_task_is_rejected(tmp_path):
    cfg = _compose(["model=kan_gpt", "data=digits", "trainer=smoke"])
    with pytest.raises(ValueError, match="data=digits is a classification dataset"):
        build_trainer(cfg, run_dir=tmp_path)


PRETRAINED_EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment" / "pretrained").glob("*.yaml"))


def test_every_shipped_checkpoint_has_an_experiment_config():
    from kanzoo.models import list_pretrained

    assert set(PRETRAINED_EXPERIMENTS) >= {n for n in list_pretrained() if "-" in n}
    assert len(PRETRAINED_EXPERIMENTS) == 14


@pytest.mark.parametrize("name", PRETRAINED_EXPERIMENTS)
def test_pretrained_experiment_pins_the_run(name, tmp_path):
    from kanzoo.models import model_info

    cfg = _compose([f"experiment=pretrained/{name}", "run_dir=x"])
    family, data = name.split("-")
    info = model_info(cfg["model"]["name"])
    assert info["family"] == family and info["alias_of"] is None  # a sized name, not an alias
    assert cfg["data"]["name"] == data and cfg["trainer"]["device"] == "cpu"
    smoke = _compose([f"experiment=pretrained/{name}", "trainer=smoke", "logger=none"])
    trainer = build_trainer(smoke, run_dir=tmp_path)
    assert trainer.config.max_steps == 3
