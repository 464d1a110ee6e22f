"""A sweep's plots: the loss over one or two swept values, and the best-of-N convergence of a multi-start fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(plt, fig, path: Path) -> None:
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _scalar(value) -> float:
    """A swept value as one number (the first entry of a vector value)."""
    return float(np.ravel(value)[0])


def plot_landscape(rows: list[dict], names: list[str], path: Path, title: str) -> None:
    """One swept name: best loss against the value (log scale where the losses are positive). Two names: the
    trials as points in the plane, coloured by log10 of the best loss."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    loss = np.array([r["best_loss"] for r in rows])
    x = np.array([_scalar(r[f"values.{names[0]}"]) for r in rows])
    if len(names) == 1:
        order = np.argsort(x)
        ax.plot(x[order], loss[order], "o-", ms=4)
        ax.set_xlabel(names[0])
        ax.set_ylabel("loss")
        if np.all(loss > 0):
            ax.set_yscale("log")
    else:
        y = np.array([_scalar(r[f"values.{names[1]}"]) for r in rows])
        shown = np.log10(np.maximum(loss, 1e-300)) if np.all(loss > 0) else loss
        points = ax.scatter(x, y, c=shown, cmap="viridis", s=40)
        fig.colorbar(points, ax=ax, label="log10 loss" if np.all(loss > 0) else "loss")
        best = int(np.argmin(loss))
        ax.plot(x[best], y[best], "r*", ms=14, label=f"best {loss[best]:.3g}")
        ax.legend()
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    ax.set_title(title)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_convergence(rows: list[dict], path: Path, title: str) -> None:
    """Left: each fit's loss per iteration (from its result.json). Right: the best final loss among the first N
    fits (in trial order) against N."""
    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    positive = all(r["best_loss"] > 0 for r in rows)
    for r in rows:
        try:
            history = json.loads((Path(r["folder"]) / "result.json").read_text()).get("history", [])
        except (OSError, ValueError):
            continue
        loss = [h["loss"] for h in history]
        if loss:
            left.plot(np.fmin.accumulate(np.nan_to_num(loss, nan=np.inf)), lw=1, alpha=0.7)
    left.set_xlabel("evaluation")
    left.set_ylabel("best loss so far")
    ordered = sorted(rows, key=lambda r: r["index"])
    best = np.minimum.accumulate([r["best_loss"] for r in ordered])
    right.plot(np.arange(1, len(best) + 1), best, "o-", ms=4)
    right.set_xlabel("fits (N)")
    right.set_ylabel("best loss of N fits")
    if positive:
        left.set_yscale("log")
        right.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path)
