"""Loss-curve figure of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def plot_loss_curve(
    history: list[dict[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path | None:
    """Plot training loss (and validation metrics, if any) against optimizer step.

    Args:
        history: Records with ``step`` and ``loss`` (training) and/or ``val_*`` keys.
        path: Output PNG path.
        title: Figure title.

    Returns:
        The written path, or None when ``history`` holds no training loss.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in history if isinstance(r.get("loss"), (int, float))]
    if not train:
        return None
    val_keys = sorted({k for r in history for k in r if k.startswith("val_") and k != "val_ppl"})
    fig, axes = plt.subplots(1, 2 if val_keys else 1, figsize=(11 if val_keys else 6, 4), squeeze=False)
    ax = axes[0, 0]
    steps, losses = zip(*train)
    ax.plot(steps, losses, label="train loss", color="tab:blue")
    val_loss = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if val_loss:
        ax.plot(*zip(*val_loss), "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if val_keys:
        ax2 = axes[0, 1]
        for key in val_keys:
            if key == "val_loss":
                continue
            points = [(r["step"], r[key]) for r in history if key in r]
            ax2.plot(*zip(*points), "o-", label=key)
        ax2.set_xlabel("step")
        ax2.set_ylabel("validation metric")
        ax2.grid(alpha=0.3)
        ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
