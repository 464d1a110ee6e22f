"""Trajectory files (``trajectory.npz``) and drawing a rollout, from a live simulation or from such a file.

A trajectory file holds, for a rollout of T steps:

- one array per state quantity (``x``, ``v`` for the mass-spring system), frame axis first: ``(T + 1, n, dim)``
  for a single copy, ``(T + 1, batch, n, dim)`` when the scene simulates ``batch > 1`` copies;
- ``frame`` (T + 1,): the frame number of each row, and ``time`` (T + 1,): frame * dt in seconds;
- ``act`` (T, [batch,] actuators), when the system has a controller: the action applied during step f -> f + 1;
- what is needed to draw it: ``edges`` (m, 2) particle index pairs, ``faces`` (k, 3), ``ground`` (its height,
  NaN when there is none), ``actuated`` (indices of the actuated edges) and ``actuator`` (their action column);
- ``meta``: a JSON string with system, scene, dim, up_axis, dt, steps, batch and the diffsim version (and for smoke
  ``scalars``, the names of the components of ``scalars``).

Written atomically with numpy's ``savez`` (no pickles: `numpy.load(path)` reads it as it is).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.scene.registry import Drawing

__all__ = ["rollout", "save_trajectory", "load_trajectory", "render_trajectory", "default_stride"]

#: an animation longer than this is subsampled further
MAX_FRAMES = 300


def rollout(sim) -> dict:
    """After `sim.forward()` with full storage: the state arrays ``[frame, batch, ...]`` plus ``act``
    ``[step, batch, actuators]`` when there is a controller."""
    traj = sim.trajectory()
    if "act" in {s.name for s in sim.state.specs} and sim.storage == "full":
        traj["act"] = sim.state.field("act").to_numpy()[: sim.steps]
    return traj


def save_trajectory(
    path: str | os.PathLike,
    traj: dict,
    drawing: Drawing,
    *,
    dt: float,
    batch: int,
    system: str,
    scene: str = "",
    scalars: list[str] | None = None,
) -> Path:
    """Write `traj` (from `rollout`) and the drawing info to `path` (.npz), atomically. scalars: the names of the
    components of a smoke system's ``scalars`` (recorded in meta, for a density target)."""
    from diffsim import __version__  # noqa: PLC0415
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    arrays: dict[str, np.ndarray] = {}
    frames = None
    for name, arr in traj.items():
        arr = np.asarray(arr)
        if batch == 1 and arr.ndim >= 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        arrays[name] = arr
        if name != "act":
            frames = arr.shape[0]
    if frames is None:
        raise DiffsimError("no state quantity to write", where=os.fspath(path))
    arrays["frame"] = np.arange(frames, dtype=np.int64)
    arrays["time"] = arrays["frame"] * float(dt)
    arrays["edges"] = (
        np.zeros((0, 2), np.int64) if drawing.edges is None else np.asarray(drawing.edges, np.int64)
    )
    arrays["faces"] = (
        np.zeros((0, 3), np.int64) if drawing.faces is None else np.asarray(drawing.faces, np.int64)
    )
    arrays["ground"] = np.array(np.nan if drawing.ground is None else float(drawing.ground))
    arrays["actuated"] = np.zeros(0, np.int64) if drawing.actuated is None else np.asarray(drawing.actuated)
    arrays["actuator"] = np.zeros(0, np.int64) if drawing.actuator is None else np.asarray(drawing.actuator)
    arrays["fixed"] = np.zeros(0, np.int64) if drawing.fixed is None else np.asarray(drawing.fixed)
    meta = {
        "system": system,
        "scene": scene,
        "dim": drawing.dim,
        "up_axis": drawing.up_axis % drawing.dim,
        "quantity": drawing.quantity,
        "grid": bool(drawing.grid),
        "dt": float(dt),
        "steps": frames - 1,
        "batch": batch,
        "diffsim": __version__,
    }
    if scalars is not None:
        meta["scalars"] = list(scalars)
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def load_trajectory(path: str | os.PathLike) -> dict:
    """Read a trajectory file: a dict of its arrays plus ``meta`` (a dict) and ``drawing`` (a `Drawing`)."""
    name = os.fspath(path)
    try:
        with np.load(name, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DiffsimError("file not found", where=name) from None
    except (OSError, ValueError) as e:
        raise DiffsimError(f"not a trajectory file (.npz): {e}", where=name) from None
    meta = json.loads(str(data.pop("meta"))) if "meta" in data else {}
    quantity = meta.get("quantity", "x")
    if quantity not in data:
        raise DiffsimError(f"no array {quantity!r} (arrays: {', '.join(data)})", where=name)
    x = data[quantity]
    dim = int(meta.get("dim", x.shape[-1]))
    ground = float(data["ground"]) if "ground" in data else math.nan
    data["meta"] = meta
    data["drawing"] = Drawing(
        quantity=quantity,
        dim=dim,
        up_axis=int(meta.get("up_axis", dim - 1)),
        edges=data.get("edges"),
        faces=data.get("faces"),
        ground=None if math.isnan(ground) else ground,
        actuated=data.get("actuated"),
        actuator=data.get("actuator"),
        fixed=data.get("fixed"),
        grid=bool(meta.get("grid", False)),
    )
    return data


def _render_grid(cells, drawing: Drawing, path, *, dt, fps, stride, title, progress) -> str:
    """A cell field ``(frames, *cells, components)`` as an animated image of its first component; in 3D the sum
    along the horizontal axis other than the first (a projection of the smoke's density)."""
    from diffsim.viz import animate_grid  # noqa: PLC0415

    arr = np.asarray(cells, dtype=np.float64)
    if arr.ndim != drawing.dim + 2:
        raise DiffsimError(
            f"expected a cell field of shape (frames, {', '.join(['n'] * drawing.dim)}, components), got {arr.shape}",
            where=os.fspath(path),
        )
    q = arr[..., 0]
    if drawing.dim == 3:
        up = drawing.up_axis % 3
        depth = [a for a in range(3) if a != up][1]
        q = q.sum(axis=1 + depth)
        horizontal = [a for a in range(3) if a not in (up, depth)][0]
        if horizontal > up:  # keep (frames, horizontal, up)
            q = np.swapaxes(q, 1, 2)
    frames = q.shape[0]
    stride = default_stride(frames, dt, fps) if stride is None else int(stride)
    # [frames, x, y] -> [frames, y, x]: rows are heights, drawn bottom up
    animate_grid(np.swapaxes(q, 1, 2), path, fps=fps, stride=stride, title=title, progress=progress)
    return "matplotlib"


def default_stride(frames: int, dt: float | None, fps: float) -> int:
    """Every how many frames to draw so that the animation plays near real time and stays under MAX_FRAMES."""
    stride = max(1, round(1.0 / (dt * fps))) if dt else 1
    return max(stride, math.ceil(frames / MAX_FRAMES))


def to_renderer_axes(pos: np.ndarray, up_axis: int) -> tuple[np.ndarray, tuple | None]:
    """3D positions in the renderer's axes (y up) and, for `render_3d(axes=...)`, the system axis each drawn axis
    shows with its sign. For z up, (x, y, z) -> (x, z, -y), a proper rotation, so that the scene is not mirrored;
    (y, x, -z) for x up."""
    up = up_axis % 3
    if up == 1:
        return pos, None
    others = [a for a in range(3) if a != up]
    shown = np.stack([pos[..., others[0]], pos[..., up], -pos[..., others[1]]], axis=-1)
    return shown, (("xyz"[others[0]], 1), ("xyz"[up], 1), ("xyz"[others[1]], -1))


def render_trajectory(
    positions: np.ndarray,
    drawing: Drawing,
    path: str | os.PathLike,
    *,
    dt: float | None = None,
    actions: np.ndarray | None = None,
    fps: float = 30.0,
    stride: int | None = None,
    title: str | None = None,
    progress: bool = True,
    scene: dict | None = None,
) -> str:
    """Draw positions ``(frames, n, dim)`` to a GIF, MP4 or PNG: matplotlib in 2D, `render_3d` in 3D.

    actions: ``(steps, actuators)``, colouring the actuated edges. scene: the resolved scene (``Scene.resolved``),
    whose colliders, obstacles and targets a 3D still then shows. Returns the renderer used.
    """
    from diffsim.viz import animate_2d, render_3d  # noqa: PLC0415

    if drawing.grid:
        return _render_grid(
            positions, drawing, path, dt=dt, fps=fps, stride=stride, title=title, progress=progress
        )
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != drawing.dim:
        raise DiffsimError(
            f"expected positions of shape (frames, n, {drawing.dim}), got {pos.shape}", where=os.fspath(path)
        )
    frames = pos.shape[0]
    stride = default_stride(frames, dt, fps) if stride is None else int(stride)
    edges = drawing.edges if drawing.edges is not None and len(drawing.edges) else None
    if drawing.dim == 2:
        act = None
        actuated = drawing.actuated if drawing.actuated is not None and len(drawing.actuated) else None
        if actions is not None and actuated is not None and edges is not None:
            a = np.asarray(actions, dtype=np.float64)
            if a.ndim == 2 and len(a):
                a = np.concatenate([a, a[-1:]], axis=0)[:frames]  # the last frame shows the last action
                act = a[:, np.asarray(drawing.actuator, dtype=np.int64)]
        colors = None
        if drawing.fixed is not None and len(drawing.fixed):
            colors = ["C0"] * pos.shape[1]
            for i in drawing.fixed:
                colors[int(i)] = "0.2"
        animate_2d(
            pos,
            path,
            springs=edges,
            fps=fps,
            stride=stride,
            ground_y=drawing.ground,
            title=title,
            progress=progress,
            actuated=actuated if edges is not None else None,
            actions=act,
            colors=colors,
        )
        return "matplotlib"
    # 3D: the renderer's vertical axis is y; the system's is up_axis (z for the mass-spring system)
    shown, axes = to_renderer_axes(pos, drawing.up_axis)
    solids, targets = _scene_extras(scene, drawing.up_axis)
    faces = drawing.faces if drawing.faces is not None and len(drawing.faces) else None
    return render_3d(
        shown,
        path,
        edges=edges,
        faces=faces,
        ground_y=drawing.ground,
        fps=fps,
        stride=stride,
        progress=progress,
        axes=axes,
        title=title,
        dt=dt,
        solids=solids,
        targets=targets,
    )


def _scene_extras(scene: dict | None, up_axis: int) -> tuple[list, np.ndarray | None]:
    """The scene's fixed colliders and obstacles as meshes and its loss's targets, in the renderer's axes."""
    if not scene:
        return [], None
    from diffsim.viz.viewer import static_solids, targets  # noqa: PLC0415

    solids = [(to_renderer_axes(v, up_axis)[0], t) for v, t in static_solids(scene, 3)]
    points = targets(scene, 3)
    return solids, None if points is None else to_renderer_axes(points, up_axis)[0]
