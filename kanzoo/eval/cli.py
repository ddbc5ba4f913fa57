"""The command line of ``evaluate.py``: ``key=value`` overrides of ``configs/eval.yaml``.

``main(argv)`` composes the settings with Hydra's compose API (so every Hydra problem becomes one
line), checks them (:class:`~kanzoo.eval.config.EvalConfig`), builds the data and runs
:func:`~kanzoo.eval.runner.evaluate_config`. ``data.<key>=<value>`` overrides are the settings the
user chose; the rest of the ``data=<name>`` group are defaults under the checkpoint's recorded
preprocessing (see :mod:`kanzoo.eval.sources`). Without ``data=``, ``data.<key>=<value>`` changes
the data recorded with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from kanzoo._cli import UserInputError

__all__ = ["main", "usage"]

_HEAD = """usage: python evaluate.py checkpoint=<dir | shipped name | hub id> [data=<config>] \\
           [data.<key>=<value> ...] [<setting>=<value> ...]

Evaluate a checkpoint and write metrics.json, report.md and pictures to output_dir.

  python evaluate.py checkpoint=runs/kan_unet/<time>/final              # data recorded with it
  python evaluate.py checkpoint=runs/kan_unet/<time>/final data=busi    # another dataset, same preprocessing
  python evaluate.py checkpoint=kan_gpt-shakespeare split=val max_samples=100

data=<config> is a file of configs/data/ (python -m kanzoo.data lists the datasets). Preprocessing
(image_size, in_chans, mean, std, mask decoding, tokenizer, block_size) comes from the checkpoint
unless you set data.<key>=... yourself; metrics.json records every value used and its source.

settings (configs/eval.yaml):"""


def usage() -> str:
    """The ``--help`` text: examples and every setting with its documentation."""
    from kanzoo.eval.config import EvalConfig

    doc = EvalConfig.__doc__ or ""
    args = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    entries: dict[str, list[str]] = {}
    current = None
    for line in args.splitlines():
        m = re.match(r"^\s{8}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            entries[current] = [m.group(2).strip()]
        elif current and line.strip():
            entries[current].append(line.strip())
    lines = [_HEAD]
    for f in dataclasses.fields(EvalConfig):
        default = f.default if f.default is not dataclasses.MISSING else None
        text = " ".join(entries.get(f.name, []))
        lines.append(f"  {f.name}={'null' if default is None else default}\n      {text}")
    return "\n".join(lines)


def _default_config_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "configs"


def _split_overrides(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Hydra overrides without ``data.<key>=`` ones, and those parsed into ``{key: value}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for arg in argv:
        if arg.startswith("-"):
            raise UserInputError(
                f"unknown option {arg!r}: evaluate.py takes key=value settings (python evaluate.py --help)"
            )
        if "=" not in arg:
            raise UserInputError(f"arguments are key=value settings, got {arg!r} (python evaluate.py --help)")
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(argv)
    except Exception as err:  # hydra's OverrideParseException and lexer errors
        raise UserInputError(f"cannot parse the arguments: {str(err).strip().splitlines()[0]}") from None
    from kanzoo.eval.config import EvalConfig

    known = [f.name for f in dataclasses.fields(EvalConfig)]
    rest, data = [], {}
    for arg, ov in zip(argv, parsed):
        key = ov.key_or_group
        top = key.split(".")[0]
        if top not in known and top not in ("data", "hydra"):
            import difflib

            close = difflib.get_close_matches(top, known + ["data"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserInputError(
                f"unknown evaluate setting {top!r}{hint}; python evaluate.py --help lists them"
            )
        if key.startswith("data.") and ov.package is None:
            if ov.is_delete():
                raise UserInputError(f"{arg!r}: deleting data settings is not supported")
            name = key[len("data.") :]
            if not name or "." in name:
                raise UserInputError(f"{arg!r}: data settings are data.<key>=<value>")
            data[name] = ov.value()
        else:
            rest.append(arg)
    return rest, data


def _check_data_choice(overrides: list[str], config_dir: Path) -> None:
    """``data=<name>`` must name a file of ``configs/data/``; suggest close names otherwise."""
    import difflib

    options = sorted(p.stem for p in (config_dir / "data").glob("*.yaml"))
    for arg in overrides:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") != "data" or value in options or value in ("null", ""):
            continue
        close = difflib.get_close_matches(value, options, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"unknown data {value!r}{hint} (configs/data: {', '.join(options)})")


def _compose(overrides: list[str], config_dir: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name="eval", overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except UserInputError:
        raise
    except Exception as err:  # Hydra/OmegaConf composition errors: one line naming the problem
        if type(err).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserInputError(text) from None
    finally:
        GlobalHydra.instance().clear()


def main(argv: list[str], *, config_dir: str | Path | None = None) -> int:
    """Run ``evaluate.py`` with ``argv`` (without the program name); returns the exit status.

    Raises:
        UserInputError: any problem with the settings, files, checkpoint or data (one line).
    """
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage())
        return 0
    from kanzoo.eval.config import EvalConfig
    from kanzoo.eval.runner import evaluate_config, print_summary
    from kanzoo.eval.sources import recorded_data

    overrides, data_explicit = _split_overrides(list(argv))
    config_dir = Path(config_dir) if config_dir else _default_config_dir()
    _check_data_choice(overrides, config_dir)
    composed = _compose(overrides, config_dir)
    data_group = composed.pop("data", None)
    composed.pop("hydra", None)
    if composed.get("checkpoint") in (None, "", "???"):
        raise UserInputError(
            "give checkpoint=<directory | shipped name | hub id> (see python evaluate.py -h)"
        )
    cfg = EvalConfig.from_dict(composed)
    if isinstance(data_group, dict):
        missing = [k for k, v in data_group.items() if v == "???" and k not in data_explicit]
        if missing:
            raise UserInputError(f"data.{missing[0]} is required for data={data_group.get('name')}")
        name = data_explicit.pop("name", data_group.get("name"))
        defaults = {k: v for k, v in data_group.items() if k != "name" and v != "???"}
        data, data_defaults = {"name": name, **data_explicit}, defaults
    elif data_explicit:
        recorded = recorded_data(cfg.checkpoint)
        if recorded is None and "name" not in data_explicit:
            raise UserInputError(
                f"no data is recorded with checkpoint {cfg.checkpoint!r}; choose one with data=<config>"
            )
        recorded = dict(recorded or {})
        name = data_explicit.pop("name", recorded.pop("name", None))
        recorded.pop("name", None)
        data, data_defaults = {"name": name, **data_explicit}, recorded
    else:
        data, data_defaults = None, None
    result = evaluate_config(cfg, cfg.checkpoint, data, compare=cfg.compare, data_defaults=data_defaults)
    print_summary(result)
    return 0
