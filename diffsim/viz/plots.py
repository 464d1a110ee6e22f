"""Static plots of an optimisation run: loss curve, tracked trajectories, parameter paths.

Inputs are plain Python lists and numpy arrays, so these work on the output of any simulator or optimiser. Each
function writes one image (".png", ".pdf" or ".svg", chosen by the suffix) atomically and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from diffsim.errors import DiffsimError

from ._common import new_figure
from .io import PathLike, atomic_path, check_still_suffix

PLOT_SUFFIXES = (".png", ".pdf", ".svg")

#: At most this many components of a vector parameter are drawn, to keep the plot readable.
MAX_COMPONENTS = 6

_AXIS_NAMES = ("x", "y", "z")


def _save(fig, path: PathLike) -> Path:
    check_still_suffix(path, PLOT_SUFFIXES)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def loss_values(history: Sequence[float] | Sequence[Mapping[str, float]]) -> np.ndarray:
    """The loss per iteration from a list of floats or a list of dicts with key "loss", as a float64 array."""
    values = []
    for i, entry in enumerate(history):
        if isinstance(entry, Mapping):
            if "loss" not in entry:
                raise DiffsimError(
                    f"entry has no 'loss' key (keys: {', '.join(map(str, entry))})", where=f"history[{i}]"
                )
            entry = entry["loss"]
        try:
            values.append(float(entry))
        except (TypeError, ValueError):
            raise DiffsimError(f"loss must be a number, got {entry!r}", where=f"history[{i}]") from None
    return np.asarray(values, dtype=np.float64)


def plot_loss(
    history: Sequence[float] | Sequence[Mapping[str, float]],
    path: PathLike,
    *,
    title: str | None = None,
    log: bool | None = None,
) -> Path:
    """Plot the loss against the iteration number.

    history: one loss per iteration, as floats or as dicts with key "loss" (other keys are ignored).
    path: output image (.png, .pdf or .svg), written atomically.
    log: log-scale y axis; by default on when every finite value is positive. Non-finite values leave gaps.
    Returns the path written.
    """
    check_still_suffix(path, PLOT_SUFFIXES)
    loss = loss_values(history)
    if loss.size == 0:
        raise DiffsimError("history is empty: nothing to plot", where="history")
    finite = np.isfinite(loss)
    if log is None:
        log = bool(finite.any() and np.all(loss[finite] > 0))
    fig = new_figure(640, 400)
    ax = fig.add_subplot()
    iterations = np.arange(loss.size)
    ax.plot(iterations, loss, marker="." if loss.size <= 50 else None, color="C0")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    best = int(np.nanargmin(np.where(finite, loss, np.nan))) if finite.any() else None
    if best is not None:
        ax.plot([best], [loss[best]], "o", color="C3", label=f"best {loss[best]:.4g} (iteration {best})")
        ax.legend(loc="upper right")
    ax.set_title(title or "loss")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _target_for_points(target, num_frames: int, num_bodies: int, points: np.ndarray, dim: int) -> np.ndarray:
    """Broadcast a target to (T, k, dim) for the k tracked points (see `plot_trajectories` for the accepted shapes)."""
    arr = np.asarray(target, dtype=np.float64)
    k = points.size
    if arr.shape == (dim,):
        return np.broadcast_to(arr, (num_frames, k, dim))
    if arr.shape == (k, dim):
        return np.broadcast_to(arr, (num_frames, k, dim))
    if arr.shape == (num_bodies, dim):
        return np.broadcast_to(arr[points], (num_frames, k, dim))
    if arr.shape == (num_frames, k, dim):
        return arr
    if arr.shape == (num_frames, num_bodies, dim):
        return arr[:, points]
    raise DiffsimError(
        f"target shape {arr.shape} does not fit traj (T={num_frames}, n={num_bodies}, dim={dim}) with {k} tracked "
        f"points; use ({dim},), ({k}, {dim}), ({num_bodies}, {dim}), ({num_frames}, {k}, {dim}) or "
        f"({num_frames}, {num_bodies}, {dim})",
        where="target",
    )


def plot_trajectories(
    traj,
    target=None,
    points: Sequence[int] | None = None,
    *,
    path: PathLike,
    dt: float | None = None,
    title: str | None = None,
) -> Path:
    """Plot tracked points' coordinates against time, one subplot per axis, with the target dashed.

    traj: (T, n, dim) positions (m) of n points over T frames, dim in 1..3.
    target: where the tracked points should be, dashed in the same colour: one point (dim,) for all, one per tracked
        point (k, dim) or per point of traj (n, dim), or a path over time (T, k, dim) or (T, n, dim).
    points: indices of the points to plot; default all when n <= 8, else the first 8.
    path: output image (.png, .pdf or .svg), written atomically (keyword only).
    dt: seconds per frame; when given the x axis is time (s) instead of frame number.
    Returns the path written.
    """
    check_still_suffix(path, PLOT_SUFFIXES)
    arr = np.asarray(traj, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DiffsimError(f"expected shape (T, n, dim) with dim 1..3, got {np.shape(traj)}", where="traj")
    num_frames, num_bodies, dim = arr.shape
    idx = (
        np.arange(min(num_bodies, 8)) if points is None else np.atleast_1d(np.asarray(points, dtype=np.int64))
    )
    if idx.size == 0 or idx.min() < -num_bodies or idx.max() >= num_bodies:
        raise DiffsimError(f"point indices must be in [0, {num_bodies}), got {idx.tolist()}", where="points")
    idx = idx % num_bodies
    goal = None if target is None else _target_for_points(target, num_frames, num_bodies, idx, dim)

    time = np.arange(num_frames) * (dt if dt else 1.0)
    fig = new_figure(640, 220 * dim + 60)
    axes = fig.subplots(dim, 1, sharex=True, squeeze=False)[:, 0]
    for d, ax in enumerate(axes):
        for j, i in enumerate(idx):
            color = f"C{j % 10}"
            ax.plot(time, arr[:, i, d], color=color, label=f"point {i}")
            if goal is not None:
                ax.plot(time, goal[:, j, d], color=color, linestyle="--", linewidth=1.2)
        ax.set_ylabel(f"{_AXIS_NAMES[d]} (m)")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time (s)" if dt else "frame")
    handles, labels = axes[0].get_legend_handles_labels()
    if goal is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.3", linestyle="--"))
        labels.append("target")
    axes[0].legend(handles, labels, loc="best", fontsize="small", ncol=min(3, len(labels)))
    axes[0].set_title(title or "trajectories")
    return _save(fig, path)


def plot_param_paths(
    param_history: Mapping[str, Sequence[object]],
    path: PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Plot each parameter's value against the iteration number, one subplot per parameter.

    param_history: name -> list of values, one per iteration; each value a number or an array of any shape (it is
        flattened, and only the first 6 components are drawn). All values of one parameter must have the same size.
    path: output image (.png, .pdf or .svg), written atomically.
    Returns the path written.
    """
    check_still_suffix(path, PLOT_SUFFIXES)
    if not param_history:
        raise DiffsimError("param_history is empty: nothing to plot", where="param_history")
    series = {}
    for name, values in param_history.items():
        rows = [np.ravel(np.asarray(v, dtype=np.float64)) for v in values]
        if not rows:
            raise DiffsimError("no values recorded", where=f"param_history[{name!r}]")
        sizes = {r.size for r in rows}
        if len(sizes) != 1:
            raise DiffsimError(
                f"values change size across iterations: {sorted(sizes)}", where=f"param_history[{name!r}]"
            )
        series[name] = np.stack(rows)  # (iterations, components)

    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = new_figure(360 * ncols + 40, 260 * nrows + 40)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, series.items(), strict=False):
        shown = min(values.shape[1], MAX_COMPONENTS)
        iterations = np.arange(values.shape[0])
        for c in range(shown):
            label = f"[{c}]" if values.shape[1] > 1 else None
            ax.plot(
                iterations,
                values[:, c],
                color=f"C{c}",
                label=label,
                marker="." if len(iterations) <= 30 else None,
            )
        suffix = f" (first {shown} of {values.shape[1]})" if values.shape[1] > shown else ""
        ax.set_title(name + suffix, fontsize="medium")
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        if values.shape[1] > 1:
            ax.legend(fontsize="x-small", loc="best")
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
