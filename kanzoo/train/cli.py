"""Command-line helpers of ``train.py`` (plain Python: no Hydra import).

:func:`normalize_overrides` runs before Hydra parses the command line so that

- ``model=kan_gpt_small`` (a registered sized name without its own YAML) becomes
  ``model=kan_gpt model.name=kan_gpt_small`` (its family config); a sweep over sized names of one
  family (``model=kan_gpt_mini,kan_gpt_small``) sweeps ``model.name`` of the family config, and
- an unknown ``model=``/``data=`` choice fails with one line naming close matches instead of
  Hydra's multi-line listing.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

_CHOICE = re.compile(r"^(model|data)=(.+)$")


def config_options(config_dir: str | Path, group: str) -> list[str]:
    """Names of the YAML files of config group ``group`` (sorted)."""
    return sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))


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

                raise ValueError(
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
                raise ValueError(
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
        raise ValueError(f"unknown data {bad!r}{hint} (configs: {', '.join(options)})")
    return out + extra


def one_line(err: BaseException) -> str:
    """``error: <message>`` on a single line (OmegaConf appends key/type detail lines)."""
    text = str(err).strip()
    if type(err).__module__.startswith("omegaconf"):
        text = text.splitlines()[0] if text else type(err).__name__
    return "error: " + " ".join(text.split())
