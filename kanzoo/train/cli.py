"""Command-line layer of ``train.py``: everything between the shell and :class:`~kanzoo.train.Trainer`.

Before Hydra runs (:func:`prepare_argv`):

- ``-h``/``--help`` prints usage; ``model=kan_gpt_small`` (a registered sized name without its own
  YAML) becomes ``model=kan_gpt model.name=kan_gpt_small`` and a sweep over sized names of one
  family sweeps ``model.name`` (:func:`normalize_overrides`);
- :func:`check_command_line` composes the configuration itself and checks it: unknown config
  choices (``trainer=smok``), unknown keys (``trainer.max_step=3``), unparsable overrides, sweeps
  without ``-m``, unresolvable interpolations, every trainer/optim/schedule/logger value and the
  run directory. Each problem is one ``ValueError`` line naming the setting, with a suggestion,
  raised before Hydra creates ``runs/<model>/<time>/``.

Inside the Hydra job (:func:`train_job`): build and fit; a start that fails before the trainer
wrote anything removes the run directory Hydra made for it (only if it holds nothing but Hydra's
own ``.hydra/`` and log). Hydra is imported lazily: the trainer itself never imports it.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .config import SettingError

_CHOICE = re.compile(r"^(model|data)=(.+)$")
#: Hydra flags after which no job runs (they print something): no pre-check.
_INFO_FLAGS = (
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--hydra-help",
    "--resolve",
    "--package",
    "-p",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
)
_GROUPS = ("model", "data", "trainer", "optim", "logger", "experiment")
#: Combinations of a multirun sweep that are composed and checked up front.
MAX_CHECKED_JOBS = 8
_NEW_OUTPUT_ENV = "KANZOO_NEW_OUTPUT"


def config_options(config_dir: str | Path, group: str, *, nested: bool = False) -> list[str]:
    """Names of the YAML files of config group ``group`` (sorted; ``nested``: also ``a/b``)."""
    root = Path(config_dir) / group
    files = root.rglob("*.yaml") if nested else root.glob("*.yaml")
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in files)


def _suggest(value: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(value, candidates, n=4, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _resolve_model(value: str, options: list[str]) -> str | None:
    """Family config name of a registered model without its own YAML (None if unknown)."""
    from kanzoo.models import is_model, model_info

    if not is_model(value):
        return None
    family = model_info(value).get("family")
    return family if family in options else None


def normalize_overrides(argv: list[str], config_dir: str | Path) -> list[str]:
    """Rewrite/check ``model=``/``data=`` overrides (see the module docstring).

    Raises:
        ValueError: an unknown model or data name (with suggestions), or a sweep that mixes
            families and names sized models without a config file of their own.
    """
    out: list[str] = []
    extra: list[str] = []
    for arg in argv:
        match = _CHOICE.match(arg)
        if not match:
            out.append(arg)
            continue
        group, value = match.groups()
        options = config_options(config_dir, group)
        values = [v.strip() for v in value.split(",")]
        if all(v in options for v in values) or value.startswith(("choice(", "range(", "glob(")):
            out.append(arg)
            continue
        if group == "model":
            families = {v: v if v in options else _resolve_model(v, options) for v in values}
            unknown = [v for v, fam in families.items() if fam is None]
            if unknown:
                from kanzoo.models import list_models

                raise SettingError(
                    f"unknown model {unknown[0]!r}{_suggest(unknown[0], options + list_models())} "
                    f"(configs: {', '.join(options)}; sized names: python -m kanzoo.models)"
                )
            if len(values) > 1:
                fams = {families[v] for v in values}
                if len(fams) == 1 and not any(v in options for v in values):
                    # one family: sweep its model.name (Hydra sweeps are cross products)
                    out.append(f"model={fams.pop()}")
                    extra.append(f"model.name={','.join(values)}")
                    continue
                v = next(v for v in values if v not in options)
                raise SettingError(
                    f"model={value}: {v!r} has no config file and the sweep mixes families; sweep "
                    f"names with a configs/model/*.yaml (matched twins have one), or one family "
                    f"at a time: model={families[v]} model.name={v},..."
                )
            out.append(f"model={families[values[0]]}")
            extra.append(f"model.name={values[0]}")
            continue
        bad = next(v for v in values if v not in options)
        hint = _suggest(bad, options)
        try:
            from kanzoo.data import list_datasets

            if bad in list_datasets():
                hint += (
                    f"; {bad!r} is a kanzoo.data builder without a config file: pick a config "
                    f"with the same keys and set data.name={bad}"
                )
        except ImportError:
            pass
        raise SettingError(f"unknown data {bad!r}{hint} (configs: {', '.join(options)})")
    return out + extra


def one_line(err: BaseException) -> str:
    """``error: <message>`` on a single line (kept for callers; see :func:`kanzoo._cli.one_line`)."""
    from kanzoo._cli import one_line as _one_line

    return _one_line(err)


def usage(doc: str, config_dir: str | Path) -> str:
    """``train.py --help``: the entry point's docstring and the choices of every config group."""
    lines = [doc.strip(), "", "Config groups (group=<name>; settings as group.key=value):"]
    for group in _GROUPS:
        lines.append(f"  {group}: {', '.join(config_options(config_dir, group, nested=True))}")
    lines += [
        "",
        "Trainer settings: configs/trainer/default.yaml; optimizer: configs/optim/adamw.yaml.",
        "Hydra's own help: python train.py --hydra-help",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ pre-check
def _first_line(err: BaseException) -> str:
    """The first line of a Hydra/OmegaConf message, prefixed with the setting it concerns."""
    text = str(err).strip().splitlines()
    line = " ".join(text[0].split()) if text else type(err).__name__
    key = getattr(err, "full_key", None)
    return f"{key}: {line}" if key and str(key) not in line else line


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append(path)
            out += _leaf_paths(v, path)
    return out


def _has_key(node: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _unknown_key_message(key: str, base: dict[str, Any]) -> str:
    paths = [p for p in _leaf_paths(base) if not p.startswith("hydra")]
    parent, _, last = key.rpartition(".")
    score = {p: difflib.SequenceMatcher(None, last, p.rpartition(".")[2]).ratio() for p in paths}
    ranked = sorted(paths, key=lambda p: (-score[p], p))
    # a typo in the last part, else the right name under another parent (max_steps -> trainer.max_steps)
    close = [p for p in ranked if p.rpartition(".")[0] == parent and score[p] >= 0.6][:2]
    if not close:
        close = [p for p in ranked if score[p] >= 0.8][:2]
    if not close:
        close = difflib.get_close_matches(key, paths, n=2, cutoff=0.75)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"unknown setting {key!r}{hint}; add a new key with +{key}=... or see python train.py --help"


class _PinnedClock(_dt.datetime):
    """``${now:...}`` in run/sweep dirs resolves to this process's start, in the pre-check and the
    job alike, so the check knows the exact directory Hydra is about to create."""

    pinned: _dt.datetime | None = None

    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return cls.pinned if cls.pinned is not None else _dt.datetime.now(tz)


def _pin_hydra_clock() -> None:
    try:
        import hydra.core.utils as hydra_utils
    except ImportError:
        return
    if getattr(hydra_utils, "datetime", None) is _dt.datetime:
        _PinnedClock.pinned = _dt.datetime.now()
        hydra_utils.datetime = _PinnedClock


def _check_writable_dir(setting: str, path: str) -> str | None:
    """The outermost missing directory of ``path`` (None if it exists); a clear error if it cannot be made."""
    p = Path(path).expanduser()
    missing = None
    probe = p
    while not probe.exists():
        if probe.is_symlink():
            raise SettingError(f"{setting}={path}: {probe} is a dangling symlink")
        missing = probe
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise SettingError(f"{setting}={path}: {probe} is not a directory")
    if missing is not None and not os.access(probe, os.W_OK | os.X_OK):
        raise SettingError(f"{setting}={path}: cannot create it, {probe} is not writable")
    if missing is None and not os.access(p, os.W_OK | os.X_OK):
        raise SettingError(f"{setting}={path}: the directory is not writable")
    return str(missing.resolve()) if missing is not None else None


def check_command_line(args: list[str], config_dir: str | Path) -> None:
    """Compose and check the configuration of every job ``args`` would run (see the module docs).

    Raises:
        ValueError: one line naming the first problem.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .build import check_run_settings

    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if flags:
        raise SettingError(f"unknown option {flags[0]!r}; see python train.py --help")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise SettingError(
            f"cannot parse the command line: {_first_line(err)} "
            "(settings are key=value, e.g. trainer.max_steps=100)"
        ) from None
    for o in parsed:
        key = o.key_or_group
        if key in _GROUPS and not o.is_delete():
            options = config_options(config_dir, key, nested=True)
            sweep = o.is_discrete_sweep()
            values = list(o.sweep_string_iterator()) if sweep else [o.get_value_element_as_str()]
            for v in values:
                if v not in options and not (key == "experiment" and v in ("null", "None")):
                    raise SettingError(
                        f"unknown {key} config {v!r}{_suggest(v, options)} (configs: {', '.join(options)})"
                    )
        if o.is_sweep_override() and not multirun:
            raise SettingError(
                f"{o.input_line} sweeps over several values: add -m (--multirun) to run one job per value, "
                f"or write a list as {key}=[a,b]"
            )
    try:
        jobs = BasicSweeper.split_arguments(parsed, None)[0] if multirun else [overrides]
    except HydraException as err:
        raise SettingError(_first_line(err)) from None
    GlobalHydra.instance().clear()
    _pin_hydra_clock()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            for job in jobs[:MAX_CHECKED_JOBS]:
                job_parsed = OverridesParser.create().parse_overrides(job)
                choices = [o.input_line for o in job_parsed if o.key_or_group in _GROUPS or o.is_delete()]
                try:
                    base = compose("train", overrides=choices, return_hydra_config=False)
                    base = OmegaConf.to_container(base, resolve=False)
                except (HydraException, OmegaConfBaseException) as err:
                    raise SettingError(_first_line(err)) from None
                for o in job_parsed:
                    plain = o.key_or_group not in _GROUPS and not o.key_or_group.startswith("hydra")
                    changes = not (o.is_delete() or o.is_add() or o.is_force_add())
                    if plain and changes and not _has_key(base, o.key_or_group):
                        raise SettingError(_unknown_key_message(o.key_or_group, base))
                try:
                    cfg = compose("train", overrides=job, return_hydra_config=True)
                    out_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                    out_dir = str(OmegaConf.select(cfg, out_key))
                    resolved = OmegaConf.to_container(cfg, resolve=False)
                    resolved.pop("hydra", None)
                    resolved = OmegaConf.to_container(
                        OmegaConf.create(resolved), resolve=True, throw_on_missing=True
                    )
                except (HydraException, OmegaConfBaseException) as err:
                    raise SettingError(_first_line(err)) from None
                check_run_settings(resolved, run_dir=resolved.get("run_dir") or out_dir)
                new = _check_writable_dir("hydra.sweep.dir" if multirun else "run_dir", out_dir)
                if new is not None:
                    os.environ[_NEW_OUTPUT_ENV] = new
                else:
                    os.environ.pop(_NEW_OUTPUT_ENV, None)
    finally:
        GlobalHydra.instance().clear()


def prepare_argv(argv: list[str], config_dir: str | Path, *, doc: str = "") -> list[str]:
    """``sys.argv`` for Hydra: help handled, overrides normalised and checked (see the module docs)."""
    args = list(argv[1:])
    if any(a in ("-h", "--help") for a in args):
        print(usage(doc, config_dir))
        raise SystemExit(0)
    args = normalize_overrides(args, config_dir)
    if not any(a.split("=")[0] in _INFO_FLAGS for a in args):
        check_command_line(args, config_dir)
    return [argv[0], *args]


# ----------------------------------------------------------------- the job
def remove_failed_start(output_dir: str | Path, *, log_name: str = "train.log") -> bool:
    """Remove the run directory of a start that failed before the trainer wrote anything.

    Only a directory the pre-check saw missing (this process made it) and that holds nothing but
    Hydra's ``.hydra/`` and log is removed, with its parents up to the first one that existed
    (a sweep root also loses its ``multirun.yaml`` when no job is left in it). Returns whether
    anything was removed.
    """
    new = os.environ.get(_NEW_OUTPUT_ENV)
    out = Path(output_dir).resolve()
    if not new or not (out == Path(new) or Path(new) in out.parents):
        return False
    if not out.is_dir() or not {p.name for p in out.iterdir()} <= {".hydra", log_name}:
        return False
    shutil.rmtree(out, ignore_errors=True)
    node = out.parent
    while Path(new) == node or Path(new) in node.parents:
        names = {p.name for p in node.iterdir()} if node.is_dir() else set()
        if names - {"multirun.yaml"}:
            break
        shutil.rmtree(node, ignore_errors=True)
        node = node.parent
    return True


def train_job(cfg: Any) -> Any:
    """The body of the Hydra job: resolve, build, fit (a failed start leaves nothing behind)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .build import build_trainer

    hydra_cfg = HydraConfig.get()
    out = hydra_cfg.runtime.output_dir
    try:
        try:
            resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as err:
            raise SettingError(_first_line(err)) from None
        trainer = build_trainer(resolved, run_dir=out)
        final = trainer.fit()
    except BaseException:
        remove_failed_start(out, log_name=f"{hydra_cfg.job.name}.log")
        raise
    if Path(trainer.run_dir).resolve() != Path(out).resolve():
        # another rank's directory won (accelerate launch): drop this rank's empty Hydra dir
        remove_failed_start(out, log_name=f"{hydra_cfg.job.name}.log")
    return final
