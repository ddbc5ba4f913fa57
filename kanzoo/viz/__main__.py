"""``python -m kanzoo.viz``: plot the learned edge functions of a trained KAN checkpoint.

Usage::

    python -m kanzoo.viz checkpoint=<dir|name> [layer=<glob>] [data=<name>] [output=<dir>] \\
        [split=val] [batch_size=8] [max_edges=16] [taps=sum|each] [format=png|svg] [list=true] \\
        [data.<kwarg>=<value> ...]

* ``checkpoint``: a run directory (``config.json`` + ``model.safetensors``) or a shipped checkpoint
  name, loaded with ``kanzoo.models.from_pretrained``.
* ``layer``: fnmatch glob over module names of KAN layers, e.g. ``"blocks.3.mlp.*"``; default all.
  ``list=true`` only prints the KAN layer names.
* ``data``: a dataset of ``kanzoo.data.build_data`` (``data.<kwarg>=value`` are its arguments). One
  batch of the split runs through the model and forward hooks record what reaches each layer, so the
  importance ranking and the shaded data ranges are real. Without ``data`` edges are scored over
  each input's grid range.
* ``output``: folder for one ``<layer-name>.png`` per layer plus ``edge_scores.json`` (the top edges
  of every layer with their mean |φ|); default ``viz/<run>/<checkpoint>``, one folder per
  checkpoint (``runs/kan_unet/<time>/final`` -> ``viz/kan_unet/<time>/final``; a shipped name ->
  ``viz/<name>``), so two checkpoints never overwrite each other's pictures.

A bad argument, a missing checkpoint or unusable data prints one ``error: ...`` line and exits
with status 2.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from kanzoo._cli import UserInputError, run_main
from kanzoo.interpret.edges import capture_inputs, edge_set, grid_samples, kan_modules
from kanzoo.viz.edges import plot_edges

_KEYS = {
    "checkpoint",
    "layer",
    "data",
    "output",
    "split",
    "batch_size",
    "max_edges",
    "taps",
    "format",
    "list",
}


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


_INT_KEYS = {"batch_size": 1, "max_edges": 1}


def parse_args(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` arguments -> (options, data kwargs); bad keys or values raise ``UserInputError``."""
    opts: dict[str, Any] = {}
    data_kwargs: dict[str, Any] = {}
    for arg in argv:
        key, sep, val = arg.partition("=")
        key = key.lstrip("-+")
        if not sep:
            raise UserInputError(
                f"arguments are key=value pairs, got {arg!r} (see python -m kanzoo.viz --help)"
            )
        if key.startswith("data."):
            data_kwargs[key[5:]] = _value(val)
        elif key in _KEYS:
            opts[key] = (
                val if key in ("checkpoint", "layer", "data", "output", "split", "taps") else _value(val)
            )
        else:
            raise UserInputError(f"unknown argument {key!r}; known: {sorted(_KEYS)} and data.<kwarg>")
    if "checkpoint" not in opts or not str(opts["checkpoint"]).strip():
        raise UserInputError("checkpoint=<dir|name> is required")
    for key, minimum in _INT_KEYS.items():
        if key in opts:
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise UserInputError(f"{key} must be an integer >= {minimum}, got {v!r}")
    choices = {"taps": ("sum", "each"), "format": ("png", "svg"), "split": ("train", "val", "test")}
    for key, allowed in choices.items():
        if key in opts and opts[key] not in allowed:
            raise UserInputError(f"{key} must be one of {', '.join(allowed)}, got {opts[key]!r}")
    if "list" in opts and not isinstance(opts["list"], bool):
        raise UserInputError(f"list must be true or false, got {opts['list']!r}")
    return opts, data_kwargs


def default_output(checkpoint: str) -> Path:
    """``viz/<run>/<checkpoint>``: a folder per checkpoint, never one shared by two runs.

    ``runs/kan_unet/<time>/final`` -> ``viz/kan_unet/<time>/final``; ``runs/x/checkpoints/step_00100``
    -> ``viz/x/checkpoints/step_00100``; any other folder -> ``viz/<its name>``; a shipped name ->
    ``viz/<name>``.
    """
    path = Path(str(checkpoint).rstrip("/")).expanduser()
    if not path.is_dir():
        return Path("viz") / _slug(str(checkpoint))
    path = path.resolve()
    if path.name in ("final", "best", "latest") or path.name.startswith("step_"):
        return Path("viz", *path.parts[-3:])
    return Path("viz") / path.name


def _model_input(batch: Any) -> Any:
    if isinstance(batch, dict):
        for key in ("input_ids", "pixel_values"):
            if key in batch:
                return batch[key]
        raise ValueError(f"batch has none of input_ids/pixel_values: keys {sorted(batch)}")
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _slug(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_").strip(". ") or "model"


def render(
    model: torch.nn.Module,
    *,
    layer: str = "*",
    batch: Any = None,
    output: str | os.PathLike,
    max_edges: int = 16,
    taps: str = "sum",
    fmt: str = "png",
) -> dict[str, Path]:
    """Plot every KAN layer of ``model`` matching ``layer`` into ``output``; returns name -> file.

    Args:
        model: a model containing KAN layers.
        layer: fnmatch glob over module names.
        batch: model input (tensor) for hook-captured samples; None scores over the grid range.
        output: folder for the pictures and ``edge_scores.json``.
        max_edges: edges per picture.
        taps: ``"sum"`` or ``"each"`` for convolutions.
        fmt: ``"png"`` or ``"svg"``.
    """
    mods = kan_modules(model, layer)
    if not mods:
        names = list(kan_modules(model))
        raise ValueError(
            f"no KAN layer matches layer={layer!r}; KAN layers: {names[:40]}"
            + (" ..." if len(names) > 40 else "")
        )
    samples = capture_inputs(mods, lambda: model(batch)) if batch is not None else {}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files, scores = {}, {}
    for name, mod in mods.items():
        path = out / f"{_slug(name)}.{fmt}"
        plot_edges(mod, samples=samples.get(name), max_edges=max_edges, taps=taps, path=path, title=None)
        es = edge_set(mod, taps=taps)
        s = es.mean_abs(samples[name] if name in samples else grid_samples(mod)).reshape(-1)
        top = torch.argsort(s, descending=True)[:max_edges]
        scores[name or "model"] = {
            "shape": list(es.shape),
            "scored_on": "data" if name in samples else "grid range",
            "top_edges": [[es.label(int(e)), float(s[e])] for e in top],
        }
        files[name] = path
    (out / "edge_scores.json").write_text(json.dumps(scores, indent=2))
    return files


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``argv`` without the program name); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    opts, data_kwargs = parse_args(argv)
    from kanzoo.models import from_pretrained

    model = from_pretrained(opts["checkpoint"]).eval()
    if opts.get("list"):
        for name, mod in kan_modules(model).items():
            print(f"{name}\t{type(mod).__name__}\t{tuple(mod.spline_weight.shape)}")
        return 0
    batch = None
    if opts.get("data"):
        from kanzoo.data import build_data

        dm = build_data(opts["data"], **data_kwargs)
        split = opts.get("split", "val")
        loader = dm.loader(split, batch_size=int(opts.get("batch_size", 8)), shuffle=False)
        first = next(iter(loader), None)
        if first is None:
            raise UserInputError(f"the {split!r} split of data={opts['data']} is empty")
        batch = _model_input(first)
    elif data_kwargs:
        raise UserInputError("data.<kwarg>=... needs data=<name>")
    output = Path(opts.get("output") or default_output(opts["checkpoint"]))
    if output.exists() and not output.is_dir():
        raise UserInputError(f"output={output} is an existing file; give a folder")
    files = render(
        model,
        layer=opts.get("layer", "*"),
        batch=batch,
        output=output,
        max_edges=int(opts.get("max_edges", 16)),
        taps=opts.get("taps", "sum"),
        fmt=str(opts.get("format", "png")),
    )
    for name, path in files.items():
        print(f"{name or '<model>'}: {path}")
    print(f"edge scores: {output / 'edge_scores.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
