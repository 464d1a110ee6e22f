"""Interactive viewer: a rollout as one self-contained HTML page (plotly), in the browser or inline in Jupyter.

    diffsim view runs/walker --out view.html        # a run folder, a trajectory.npz or a scene file
    diffsim.viz.show(sim)                           # inline in a notebook (a Simulation, a file or a folder)

The page holds plotly.js itself (``include_plotlyjs=True``): it opens with no network. plotly draws; this module
only translates diffsim state into plotly traces and animation frames: particles as points (MPM coloured by
material), springs as lines, cloth as a shaded surface, rigid bodies as boxes, spheres and capsules posed by each
frame's position and orientation, smoke as points at the cells holding density (2D: a heat map), and the static
ground, colliders, obstacles and targets. 3D scenes use the system's own axes (z up where the system is z up);
2D scenes are drawn on equal axes. Time is in seconds on the slider. Several rollouts (an optimize run's before and
after) are overlaid on the same axes, each named in the legend.

The page reads ``#frame=N`` from its URL (shows frame N once loaded) and ``#slider=F`` (clicks the slider at the
fraction F of its length), and writes what it shows into ``<body data-frame=... data-frames=... data-projected=...>``
(the frame shown, their number, the pixel position of the centroid of the first object drawn, and in 3D the camera:
`project` maps a point to the page's pixels with it): the browser tests (tests/viz/test_viewer_browser.py) use these.
Needs plotly (``pip install diffsim[viewer]``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffsim.errors import DiffsimError

log = logging.getLogger("diffsim.viz")

__all__ = [
    "Rollout",
    "load_rollouts",
    "rollout_of",
    "view_figure",
    "write_view",
    "show",
    "project",
    "frame_indices",
]

#: at most this many animation frames in a page (the rollout is subsampled evenly)
MAX_FRAMES = 120
#: rollout colours: the first (the "after" of an optimize run) in blue, the next in grey
ROLLOUT_COLORS = ("#1f5fbf", "#8c8c8c", "#2ca02c", "#d62728")
MATERIAL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
STATIC_COLOR = "#b8b8b0"
TARGET_COLOR = "#e0218a"


@dataclass
class Rollout:
    """One rollout to draw: the trajectory file's arrays (`load_trajectory`), its scene (the resolved scene dict,
    or None) and, for MPM, the material index of each particle."""

    label: str
    data: dict
    scene: dict | None = None
    materials: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def drawing(self):
        return self.data["drawing"]

    @property
    def time(self) -> np.ndarray:
        return np.asarray(self.data["time"], dtype=np.float64)

    @property
    def system(self) -> str:
        return self.data["meta"].get("system", "")

    def positions(self) -> np.ndarray:
        """(frames, n, dim) positions of the first copy (m)."""
        x = np.asarray(self.data[self.drawing.quantity], dtype=np.float64)
        if self.data["meta"].get("batch", 1) > 1:
            x = x[:, 0]
        return x


def _plotly():
    try:
        import plotly.graph_objects as go  # noqa: PLC0415
    except ImportError:
        raise DiffsimError(
            "the viewer needs plotly: pip install 'diffsim[viewer]' (or pip install plotly)", where="view"
        ) from None
    return go


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def _scene_dict(path: Path) -> dict | None:
    """The resolved scene of a run folder (its scene.toml), or None."""
    from diffsim.scene import load_scene  # noqa: PLC0415

    try:
        return load_scene(path).resolved if path.is_file() else None
    except DiffsimError:
        return None


def _materials(scene_data: dict | None, source: str) -> np.ndarray | None:
    """The material index of each MPM particle, from building the scene (sampling is deterministic)."""
    if not scene_data or scene_data.get("scene", {}).get("system") != "mpm":
        return None
    from diffsim.scene import load_scene  # noqa: PLC0415

    try:
        scene = load_scene(source)
        scene.init_backend()
        system, _, _ = scene.build(task=False)
        return np.asarray(system.arrays["material"])
    except (DiffsimError, KeyError, AttributeError):
        return None


def load_rollouts(source: str | os.PathLike, overrides=(), steps: int | None = None) -> list[Rollout]:
    """What `diffsim view` shows for SOURCE: a run folder (its before/after trajectories when an optimize run wrote
    them, else its trajectory.npz), a trajectory file, or a scene (simulated here, with `overrides` and `steps` as
    `load_scene` takes them)."""
    from diffsim.scene import find_scene  # noqa: PLC0415
    from diffsim.scene.trajectory import load_trajectory  # noqa: PLC0415

    path = Path(source)
    if path.is_dir():
        scene_file = path / "scene.toml"
        scene = _scene_dict(scene_file)
        files = [(n, path / f"{n}_trajectory.npz") for n in ("after", "before")]
        files = [(n, f) for n, f in files if f.is_file()] or [("rollout", path / "trajectory.npz")]
        if not files[0][1].is_file():
            raise DiffsimError(
                "no trajectory.npz (nor before/after_trajectory.npz): write one with `diffsim run`",
                where=str(path),
            )
        mats = _materials(scene, str(scene_file))
        return [Rollout(n, load_trajectory(f), scene, mats) for n, f in files]
    if path.suffix == ".npz":
        scene_file = path.parent / "scene.toml"
        scene = _scene_dict(scene_file)
        return [Rollout(path.stem, load_trajectory(path), scene, _materials(scene, str(scene_file)))]
    scene_path = find_scene(path)
    if not scene_path.exists():
        raise DiffsimError("not a run folder, trajectory file (.npz) or scene", where=str(path))
    return [rollout_of_scene(scene_path, overrides=overrides, steps=steps)]


def rollout_of_scene(
    scene_path: str | os.PathLike, label: str = "rollout", overrides=(), steps=None
) -> Rollout:
    """Simulate a scene (its own parameters) and return the rollout."""
    from diffsim.scene import load_scene  # noqa: PLC0415

    scene = load_scene(scene_path, overrides, steps=steps)
    scene.init_backend()
    _, sim, _ = scene.build(task=False, storage="full")
    sim.forward()
    return rollout_of(sim, label=label, scene=scene)


def _system_kind(system) -> str:
    """The registered kind of a system object: the package it comes from (diffsim.systems.<kind>)."""
    from diffsim.scene import system_kinds  # noqa: PLC0415

    parts = type(system).__module__.split(".")
    for kind in system_kinds():
        if kind in parts:
            return kind
    raise DiffsimError(f"cannot tell the system kind of {type(system).__name__}", where="view")


def rollout_of(sim, label: str = "rollout", scene=None) -> Rollout:
    """A Rollout from a simulation after `forward()` with full storage; scene: its `Scene` (for colliders, shapes
    and targets), if any."""
    import tempfile  # noqa: PLC0415

    from diffsim.scene.registry import system_kind  # noqa: PLC0415
    from diffsim.scene.trajectory import load_trajectory, rollout, save_trajectory  # noqa: PLC0415

    system = sim.system
    kind = scene.kind.kind if scene is not None else _system_kind(system)
    drawing = system_kind(kind).drawing(system)
    with tempfile.TemporaryDirectory(prefix="diffsim-view-") as tmp:
        file = save_trajectory(
            Path(tmp) / "trajectory.npz",
            rollout(sim),
            drawing,
            dt=float(system.dt),
            batch=int(system.batch),
            system=kind,
            scene=scene.name if scene is not None else "",
            scalars=getattr(system, "scalar_names", None),
        )
        data = load_trajectory(file)
    mats = getattr(system, "arrays", {}).get("material") if kind == "mpm" else None
    return Rollout(
        label, data, None if scene is None else scene.resolved, None if mats is None else np.asarray(mats)
    )


# ---------------------------------------------------------------------------------------------------------------
# Geometry (metres, the system's own axes)


def _rotation_vector(r) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis times angle, rad), Rodrigues' formula."""
    r = np.zeros(3) if r is None else np.asarray(r, dtype=np.float64).reshape(3)
    angle = np.linalg.norm(r)
    if angle < 1e-12:
        return np.eye(3)
    k = r / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _quaternion(q) -> np.ndarray:
    """Rotation matrix of a unit quaternion [w, x, y, z] (body to world)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / max(np.linalg.norm(q), 1e-12)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _box_mesh(half) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) corners and (12, 3) triangles of a box of half extents `half`, centred at 0."""
    h = np.asarray(half, dtype=np.float64).reshape(3)
    corners = (
        np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64) * h
    )
    tris = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )  # fmt: skip
    return corners, tris


def _sphere_mesh(radius: float, half_length: float = 0.0, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A latitude-longitude sphere of `radius`, its halves moved apart by ±half_length along z (a capsule)."""
    lat = np.linspace(0, np.pi, n // 2 + 1)
    lon = np.linspace(0, 2 * np.pi, n, endpoint=False)
    th, ph = np.meshgrid(lat, lon, indexing="ij")
    pts = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=-1) * radius
    pts[..., 2] += np.where(pts[..., 2] >= 0, half_length, -half_length)
    rows, cols = th.shape
    idx = np.arange(rows * cols).reshape(rows, cols)
    tris = []
    for i in range(rows - 1):
        for j in range(cols):
            a, b = idx[i, j], idx[i, (j + 1) % cols]
            c, d = idx[i + 1, j], idx[i + 1, (j + 1) % cols]
            tris += [[a, c, d], [a, d, b]]
    return pts.reshape(-1, 3), np.asarray(tris)


def _shape_mesh(kind: str, size) -> tuple[np.ndarray, np.ndarray]:
    size = list(np.ravel(size))
    if kind == "box":
        return _box_mesh(size)
    if kind == "capsule":
        return _sphere_mesh(size[0], size[1])
    return _sphere_mesh(size[0])


def _outline_2d(kind: str, size, n: int = 24) -> np.ndarray:
    """Closed outline (k, 2) of a 2D shape centred at 0: circle [radius], box [half extents], capsule [radius, half
    length] along y."""
    size = list(np.ravel(size))
    if kind == "box":
        hx, hy = size[0], size[1]
        return np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy], [-hx, -hy]])
    t = np.linspace(0, 2 * np.pi, n + 1)
    pts = np.stack([np.cos(t), np.sin(t)], axis=-1) * size[0]
    if kind == "capsule":
        pts[:, 1] += np.where(pts[:, 1] >= 0, size[1], -size[1])
    return pts


def _merge(meshes) -> tuple[np.ndarray, np.ndarray]:
    verts, tris, k = [], [], 0
    for v, t in meshes:
        verts.append(v)
        tris.append(t + k)
        k += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts), np.concatenate(tris)


def _rigid_shapes(scene: dict | None) -> list[tuple[int, str, list, np.ndarray, np.ndarray]]:
    """(body index, kind, size, offset, rotation matrix) of each shape of an explicit rigid scene."""
    if not scene or not scene.get("bodies") or not scene.get("shapes"):
        return []
    index = {b["name"]: i for i, b in enumerate(scene["bodies"])}
    dim = len(scene["bodies"][0]["position"])
    out = []
    for s in scene["shapes"]:
        if s.get("body") not in index:
            continue
        offset = np.zeros(dim) if s.get("offset") is None else np.asarray(s["offset"], dtype=np.float64)
        rot = s.get("rotation")
        if dim == 3:
            R = _rotation_vector(rot)
        else:
            a = float(rot or 0.0)
            R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append((index[s["body"]], s["kind"], s["size"], offset, R))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Traces


def _segments(pos: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Line segments as one polyline broken by NaN rows: (3 m, dim)."""
    if edges is None or not len(edges):
        return np.zeros((0, pos.shape[-1]))
    seg = np.full((len(edges), 3, pos.shape[-1]), np.nan)
    seg[:, 0] = pos[edges[:, 0]]
    seg[:, 1] = pos[edges[:, 1]]
    return seg.reshape(-1, pos.shape[-1])


def _xyz(p: np.ndarray) -> dict:
    p = np.round(np.asarray(p, dtype=np.float64), 5)
    if p.shape[-1] == 2:
        return {"x": p[:, 0], "y": p[:, 1]}
    return {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2]}


def _posed_shapes_3d(r: Rollout, f: int) -> tuple[np.ndarray, np.ndarray]:
    x, q = r.data["x"][f], r.data["q"][f]
    meshes = []
    for body, kind, size, offset, R in r.extra["shapes"]:
        v, t = _shape_mesh(kind, size)
        Rb = _quaternion(q[body])
        meshes.append(((v @ R.T + offset) @ Rb.T + x[body], t))
    return _merge(meshes)


def _posed_shapes_2d(r: Rollout, f: int) -> np.ndarray:
    x, angle = r.data["x"][f], np.ravel(r.data["angle"][f]) if "angle" in r.data else None
    lines = []
    for body, kind, size, offset, R in r.extra["shapes"]:
        a = 0.0 if angle is None else angle[body]
        Rb = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lines.append((_outline_2d(kind, size) @ R.T + offset) @ Rb.T + x[body])
        lines.append(np.full((1, 2), np.nan))
    return np.concatenate(lines)


def _smoke_points(r: Rollout, f: int):
    """Cell centres (m) and densities of the cells holding more than 5% of the peak density of the rollout."""
    rho = np.asarray(r.data["scalars"][f][..., 0], dtype=np.float64)
    keep = rho > r.extra["threshold"]
    cells = np.argwhere(keep)
    return (cells + 0.5) * r.extra["dx"], rho[keep]


def _dynamic_traces(go, r: Rollout, f: int, color: str, dim: int) -> list:
    """The traces of rollout `r` at frame `f` (same number and kinds in every frame)."""
    name = r.label
    scatter = go.Scatter3d if dim == 3 else go.Scatter
    if r.drawing.grid:
        if dim == 2:
            rho = np.asarray(r.data["scalars"][f][..., 0], dtype=np.float64)
            dx = r.extra["dx"]
            return [
                go.Heatmap(
                    z=np.round(rho.T, 4), x0=dx / 2, dx=dx, y0=dx / 2, dy=dx, colorscale="Greys", reversescale=False,
                    zmin=0, zmax=r.extra["peak"], name=name, colorbar={"title": "density"},
                )
            ]  # fmt: skip
        p, rho = _smoke_points(r, f)
        return [
            go.Scatter3d(
                **_xyz(p if len(p) else np.full((1, 3), np.nan)), mode="markers", name=f"{name}: smoke density",
                marker={"size": 3, "color": np.round(rho, 4) if len(rho) else [0], "colorscale": "Greys",
                        "cmin": 0, "cmax": r.extra["peak"], "opacity": 0.35, "colorbar": {"title": "density"}},
            )
        ]  # fmt: skip
    pos = r.positions()[f]
    traces = []
    if r.system == "rigid" and r.extra["shapes"]:
        if dim == 3:
            v, t = _posed_shapes_3d(r, f)
            traces.append(
                go.Mesh3d(**_xyz(v), i=t[:, 0], j=t[:, 1], k=t[:, 2], color=color, flatshading=True,
                          name=f"{name}: bodies", showlegend=True, lighting={"ambient": 0.5, "diffuse": 0.8})
            )  # fmt: skip
        else:
            traces.append(
                go.Scatter(**_xyz(_posed_shapes_2d(r, f)), mode="lines", fill="toself", name=f"{name}: bodies",
                           line={"color": color}, fillcolor=color, opacity=0.6)
            )  # fmt: skip
    faces = r.drawing.faces
    if faces is not None and len(faces) and dim == 3:
        traces.append(
            go.Mesh3d(**_xyz(pos), i=faces[:, 0], j=faces[:, 1], k=faces[:, 2], color=color, name=f"{name}: cloth",
                      showlegend=True, flatshading=False, lighting={"ambient": 0.45, "diffuse": 0.9, "specular": 0.1})
        )  # fmt: skip
    edges = r.drawing.edges
    if edges is not None and len(edges):
        traces.append(
            scatter(**_xyz(_segments(pos, edges)), mode="lines", name=f"{name}: springs" if r.system != "rigid"
                    else f"{name}: joints", line={"color": "#333333" if dim == 2 else color, "width": 3})
        )  # fmt: skip
    if not (faces is not None and len(faces)) and not (r.system == "rigid" and r.extra["shapes"]):
        if r.materials is not None and len(r.materials) == len(pos):
            marker_color = [MATERIAL_COLORS[int(m) % len(MATERIAL_COLORS)] for m in r.materials]
        else:
            marker_color = color
        traces.append(
            scatter(**_xyz(pos), mode="markers", name=f"{name}: particles" if r.system == "mpm" else f"{name}: masses",
                    marker={"size": 3 if dim == 3 else 6, "color": marker_color})
        )  # fmt: skip
    return traces


def _plane_quad(lo: np.ndarray, hi: np.ndarray, up: int, height: float) -> np.ndarray:
    a, b = [k for k in range(3) if k != up]
    quad = np.zeros((4, 3))
    for n, (u, v) in enumerate([(lo[a], lo[b]), (hi[a], lo[b]), (hi[a], hi[b]), (lo[a], hi[b])]):
        quad[n, a], quad[n, b], quad[n, up] = u, v, height
    return quad


def _static_traces(go, r: Rollout, dim: int, lo: np.ndarray, hi: np.ndarray) -> list:
    """Ground, colliders, obstacles and targets: drawn once, not animated."""
    up = r.drawing.up_axis % dim
    traces = []
    ground = r.drawing.ground
    if ground is not None:
        if dim == 3:
            quad = _plane_quad(lo, hi, up, ground)
            traces.append(go.Mesh3d(**_xyz(quad), i=[0, 0], j=[1, 2], k=[2, 3], color=STATIC_COLOR, opacity=0.6,
                                    name="ground", showlegend=True, hoverinfo="skip"))  # fmt: skip
        else:
            traces.append(go.Scatter(x=[lo[0], hi[0]], y=[ground, ground], mode="lines", name="ground",
                                     line={"color": "#555555", "width": 3}))  # fmt: skip
    scene = r.scene or {}
    meshes = static_solids(scene, dim)
    if meshes:
        v, t = _merge(meshes)
        traces.append(go.Mesh3d(**_xyz(v), i=t[:, 0], j=t[:, 1], k=t[:, 2], color=STATIC_COLOR, flatshading=False,
                                name="colliders", showlegend=True, lighting={"ambient": 0.4, "diffuse": 0.9}))  # fmt: skip
    targets = _targets(scene, dim)
    if targets is not None:
        scatter = go.Scatter3d if dim == 3 else go.Scatter
        traces.append(scatter(**_xyz(targets), mode="markers", name="target",
                              marker={"size": 8 if dim == 3 else 12, "color": TARGET_COLOR}))  # fmt: skip
    return traces


def static_solids(scene: dict | None, dim: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """(vertices (k, 3) m, triangles (j, 3)) of the scene's fixed solids: colliders other than planes (cloth) and
    box obstacles (rigid), in the system's coordinates; none in 2D."""
    scene = scene or {}
    meshes = []
    if dim != 3:
        return meshes
    for c in scene.get("colliders") or []:
        if c.get("kind") == "plane":
            continue  # a plane collider is the ground
        size = {"sphere": [c.get("radius")], "capsule": [c.get("radius"), c.get("half_length")]}.get(
            c["kind"], c.get("half_extents")
        )
        v, t = _shape_mesh(c["kind"], size)
        meshes.append(
            (v @ _rotation_vector(c.get("rotation")).T + np.asarray(c["position"], dtype=np.float64), t)
        )
    for o in scene.get("obstacles") or []:
        if "size" in o:
            v, t = _box_mesh(o["size"])
            meshes.append(
                (v @ _rotation_vector(o.get("rotation")).T + np.asarray(o["position"], np.float64), t)
            )
    return meshes


def targets(scene: dict | None, dim: int) -> np.ndarray | None:
    """Target points (k, dim) of the scene's final-position or centre-of-mass loss (m), else None."""
    return _targets(scene or {}, dim)


def scene_beside(path: str | os.PathLike) -> dict | None:
    """The resolved scene of the run folder holding a trajectory file (its scene.toml), or None."""
    return _scene_dict(Path(path).parent / "scene.toml")


def _targets(scene: dict, dim: int) -> np.ndarray | None:
    """Target points (k, dim) of a final-position or centre-of-mass loss, else None."""
    loss = (scene.get("task") or {}).get("loss") or {}
    target = loss.get("target")
    if loss.get("kind") not in ("final_position", "com_target") or not isinstance(target, list):
        return None
    arr = np.asarray(target, dtype=np.float64).reshape(-1, dim) if np.size(target) % dim == 0 else None
    return arr


def _bounds(rollouts: list[Rollout], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis ranges (m) holding every frame of every rollout, the targets and colliders, with a margin."""
    pts = []
    for r in rollouts:
        if r.drawing.grid:
            shape = np.asarray(r.data["scalars"].shape[1 : 1 + dim])
            pts += [np.zeros(dim), shape * r.extra["dx"]]
            continue
        pts.append(r.positions().reshape(-1, dim))
        if r.extra.get("shapes"):  # the bodies' extents, at a few frames
            for f in np.linspace(0, len(r.time) - 1, 12).round().astype(int):
                pts.append(_posed_shapes_3d(r, f)[0] if dim == 3 else _posed_shapes_2d(r, f))
        t = _targets(r.scene or {}, dim)
        if t is not None:
            pts.append(t)
        for c in (r.scene or {}).get("colliders") or []:
            if c.get("kind") == "sphere":
                pts += [np.asarray(c["position"]) - c["radius"], np.asarray(c["position"]) + c["radius"]]
    allp = np.vstack([np.atleast_2d(p) for p in pts])
    allp = allp[np.all(np.isfinite(allp), axis=1)]
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = 0.08 * max(float(np.max(hi - lo)), 1e-3)
    lo, hi = lo - pad, hi + pad
    for r in rollouts:
        if r.drawing.ground is not None and not r.drawing.grid:
            up = r.drawing.up_axis % dim
            lo[up] = min(lo[up], r.drawing.ground - pad)
    return lo, hi


def _prepare(r: Rollout) -> None:
    """Per-rollout drawing data that does not change between frames."""
    dim = r.drawing.dim
    r.extra["shapes"] = _rigid_shapes(r.scene) if r.system == "rigid" else []
    if r.drawing.grid:
        grid = (r.scene or {}).get("grid") or {}
        r.extra["dx"] = float(grid.get("cell_size") or 1.0)  # m; without a cell size, in cells
        r.extra["unit"] = " (m)" if grid.get("cell_size") else " (cells)"
        peak = float(np.nanmax(r.data["scalars"][..., 0])) if r.data["scalars"].size else 1.0
        r.extra["peak"] = peak if peak > 0 else 1.0
        r.extra["threshold"] = 0.05 * r.extra["peak"]
    if r.system == "rigid" and dim == 3 and "q" not in r.data:
        r.extra["shapes"] = []


def frame_indices(frames: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The rollout frames the page animates: at most `max_frames`, evenly spaced, the first and last included."""
    return np.unique(np.linspace(0, frames - 1, min(max_frames, frames)).round().astype(int))


def project(camera: dict, point) -> tuple[float, float]:
    """Page pixel of a 3D point (m) under the camera a viewer page reports in ``<body data-camera>``: plotly's
    data scale, then its model, view and projection matrices (column-major), then the canvas box."""
    v = np.append(np.asarray(point, dtype=np.float64) * np.asarray(camera["scale"]), 1.0)
    for name in ("model", "view", "projection"):
        v = np.asarray(camera[name], dtype=np.float64).reshape(4, 4).T @ v
    left, top, width, height = camera["box"]
    return left + (v[0] / v[3] + 1) / 2 * width, top + (1 - v[1] / v[3]) / 2 * height


def view_figure(rollouts: list[Rollout], *, title: str | None = None, max_frames: int = MAX_FRAMES):
    """A plotly Figure animating the rollouts (overlaid), with play/pause and a time slider in seconds."""
    go = _plotly()
    if not rollouts:
        raise DiffsimError("nothing to view", where="view")
    dim = rollouts[0].drawing.dim
    for r in rollouts:
        _prepare(r)
    lo, hi = _bounds(rollouts, dim)
    time = max((r.time for r in rollouts), key=len)
    frames_idx = frame_indices(len(time), max_frames)
    colors = {r.label: ROLLOUT_COLORS[i % len(ROLLOUT_COLORS)] for i, r in enumerate(rollouts)}

    def dynamic(f: int) -> list:
        out = []
        for r in rollouts:
            out += _dynamic_traces(go, r, min(f, len(r.time) - 1), colors[r.label], dim)
        return out

    first = dynamic(int(frames_idx[0]))
    static = _static_traces(go, rollouts[0], dim, lo, hi)
    n_dyn = len(first)
    frames = [
        go.Frame(data=dynamic(int(f)), traces=list(range(n_dyn)), name=str(k))
        for k, f in enumerate(frames_idx)
    ]
    fig = go.Figure(data=first + static, frames=frames)
    _layout(fig, rollouts[0], dim, lo, hi, time[frames_idx], title)
    return fig


def _layout(fig, r: Rollout, dim: int, lo, hi, times, title) -> None:
    meta = r.data["meta"]
    name = title or f"{meta.get('scene') or meta.get('system', '')} ({meta.get('system', '')})"
    up = r.drawing.up_axis % dim
    unit = r.extra.get("unit", " (m)")
    steps = [
        {
            "method": "animate",
            "label": f"{t:.3g}",
            "args": [[str(k)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                "transition": {"duration": 0}}],
        }
        for k, t in enumerate(times)
    ]  # fmt: skip
    dt_frame = float(times[1] - times[0]) if len(times) > 1 else 0.05
    play = {"frame": {"duration": max(20, int(1000 * dt_frame)), "redraw": True}, "fromcurrent": True,
            "transition": {"duration": 0}, "mode": "immediate"}  # fmt: skip
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        title={"text": name},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"x": 0, "y": 1},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.0,
                "y": 0.0,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 40},
                "buttons": [
                    {"label": "play", "method": "animate", "args": [None, play]},
                    {"label": "pause", "method": "animate", "args": [[None], pause]},
                ],
            }
        ],
        sliders=[
            {
                "active": 0,
                "x": 0.15,
                "len": 0.85,
                "y": 0.0,
                "yanchor": "top",
                "pad": {"t": 30},
                "currentvalue": {"prefix": "t = ", "suffix": " s"},
                "steps": steps,
            }
        ],
    )
    labels = "xyz"
    if dim == 3:
        span = hi - lo
        ratio = span / span.max()
        axes = {
            f"{labels[a]}axis": {"title": {"text": labels[a] + unit}, "range": [float(lo[a]), float(hi[a])],
                                 "autorange": False}
            for a in range(3)
        }  # fmt: skip
        eye = np.array([1.4, -1.6, 0.9])
        up_vec = np.zeros(3)
        up_vec[up] = 1.0
        if up != 2:  # keep the eye above the horizontal plane
            eye = np.roll(eye, up - 2)
        fig.update_layout(
            scene={
                **axes,
                "aspectmode": "manual",
                "aspectratio": dict(zip("xyz", (float(v) for v in ratio), strict=True)),
                "camera": {"up": dict(zip("xyz", up_vec.tolist(), strict=True)),
                           "eye": dict(zip("xyz", eye.tolist(), strict=True))},
            }
        )  # fmt: skip
    else:
        fig.update_xaxes(title_text="x" + unit, range=[float(lo[0]), float(hi[0])], autorange=False)
        fig.update_yaxes(
            title_text="y" + unit,
            range=[float(lo[1]), float(hi[1])],
            autorange=False,
            scaleanchor="x",
            scaleratio=1,
        )
        fig.update_layout(plot_bgcolor="white")


#: the page's own script (plotly's post_script; {plot_id} is the plot's element id): the URL fragment hooks and
#: the state written into <body data-*> for the browser tests
_PAGE_SCRIPT = """
(function () {
  var gd = document.getElementById('{plot_id}');
  function centroid(trace) {
    var xs = trace.x || [], ys = trace.y || [], zs = trace.z || [], n = 0, c = [0, 0, 0];
    for (var i = 0; i < xs.length; i++) {
      if (xs[i] === null || isNaN(xs[i])) continue;
      c[0] += +xs[i]; c[1] += +ys[i]; if (zs.length) c[2] += +zs[i]; n++;
    }
    return n ? [c[0] / n, c[1] / n, c[2] / n] : null;
  }
  function project(p) {
    var fl = gd._fullLayout, rect = gd.getBoundingClientRect();
    if (fl.scene && fl.scene._scene) {
      var sc = fl.scene._scene, gl = sc.glplot, cam = gl.cameraParams, s = sc.dataScale;
      var v = [p[0] * s[0], p[1] * s[1], p[2] * s[2], 1], m;
      for (m of [cam.model, cam.view, cam.projection]) {
        var o = [0, 0, 0, 0];
        for (var r = 0; r < 4; r++) for (var c = 0; c < 4; c++) o[r] += m[c * 4 + r] * v[c];
        v = o;
      }
      var box = gl.canvas.getBoundingClientRect();
      return [box.left + (v[0] / v[3] + 1) / 2 * box.width, box.top + (1 - v[1] / v[3]) / 2 * box.height];
    }
    var xa = fl.xaxis, ya = fl.yaxis;
    return [rect.left + xa._offset + xa.l2p(p[0]), rect.top + ya._offset + ya.l2p(p[1])];
  }
  function record(name) {
    document.body.dataset.frame = name;
    document.body.dataset.frames = String(((gd._transitionData || {})._frames || []).length);
    var c = centroid(gd._fullData[0]);
    document.body.dataset.centroid = JSON.stringify(c);
    document.body.dataset.projected = c ? JSON.stringify(project(c)) : '';
    var sc = gd._fullLayout.scene && gd._fullLayout.scene._scene;
    if (sc) {
      var cam = sc.glplot.cameraParams, b = sc.glplot.canvas.getBoundingClientRect();
      document.body.dataset.camera = JSON.stringify({model: Array.from(cam.model), view: Array.from(cam.view),
        projection: Array.from(cam.projection), scale: Array.from(sc.dataScale), box: [b.left, b.top, b.width, b.height]});
    }
  }
  gd.on('plotly_animated', function () { record(String(gd._fullLayout.sliders[0].active)); });
  var hash = new URLSearchParams(location.hash.slice(1));
  function go() {
    if (hash.has('frame')) {
      Plotly.animate(gd, [hash.get('frame')], {mode: 'immediate', frame: {duration: 0, redraw: true},
                                              transition: {duration: 0}});
    } else if (hash.has('slider')) {
      var rail = gd.querySelector('.slider-rail-touch-rect'), b = rail.getBoundingClientRect();
      var x = b.left + parseFloat(hash.get('slider')) * b.width, y = b.top + b.height / 2;
      rail.dispatchEvent(new MouseEvent('mousedown', {clientX: x, clientY: y, bubbles: true, view: window}));
      rail.dispatchEvent(new MouseEvent('mouseup', {clientX: x, clientY: y, bubbles: true, view: window}));
    } else {
      record('0');
    }
  }
  function ready() {  // the frames are added after the first draw: act once they and the slider are there
    var frames = (gd._transitionData || {})._frames || [];
    if (frames.length && gd.querySelector('.slider-rail-touch-rect')) go(); else setTimeout(ready, 50);
  }
  ready();
})();
"""


def to_html(fig, *, full_html: bool = True) -> str:
    """The page: plotly.js inlined (no network), the URL hooks of `_PAGE_SCRIPT`."""
    return fig.to_html(
        include_plotlyjs=True,
        full_html=full_html,
        post_script=_PAGE_SCRIPT,
        config={"displaylogo": False, "responsive": True},
        auto_play=False,
        default_width="100%",
        default_height="640px",
    )


def write_view(source, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the viewer page of SOURCE (a run folder, trajectory file, scene, Simulation or list of Rollouts) to
    `path`, atomically."""
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    fig = view_figure(_as_rollouts(source), title=title)
    html = to_html(fig)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return Path(path)


def write_run_views(
    folder: Path, trajs: dict, drawing, *, dt: float, batch: int, system: str, scene, scalars=None
) -> list[Path]:
    """For `diffsim optimize`: FOLDER/<name>_trajectory.npz of each rollout in `trajs` (name -> `rollout()` dict)
    and FOLDER/view.html overlaying them (left out, with a note in the log, where plotly is not installed)."""
    from diffsim.scene.trajectory import save_trajectory  # noqa: PLC0415

    kw = dict(dt=dt, batch=batch, system=system, scene=scene.name, scalars=scalars)
    written = [save_trajectory(folder / f"{n}_trajectory.npz", t, drawing, **kw) for n, t in trajs.items()]
    try:
        _plotly()
    except DiffsimError as e:
        log.info("view.html not written: %s", e)
        return written
    written.append(
        write_view(folder, folder / "view.html", title=f"{scene.name}: after (blue), before (grey)")
    )
    return written


def _as_rollouts(obj) -> list[Rollout]:
    if isinstance(obj, Rollout):
        return [obj]
    if isinstance(obj, list) and obj and all(isinstance(r, Rollout) for r in obj):
        return obj
    if isinstance(obj, str | os.PathLike):
        return load_rollouts(obj)
    if hasattr(obj, "forward") and hasattr(obj, "system"):
        return [rollout_of(obj)]
    raise DiffsimError(f"cannot view a {type(obj).__name__}", where="view")


def show(obj, *, title: str | None = None):
    """Display the viewer inline in Jupyter (a Simulation after forward(), a run folder, a trajectory file or a
    scene). Returns the IPython HTML object (also displayed)."""
    from IPython.display import HTML, display  # noqa: PLC0415

    html = HTML(to_html(view_figure(_as_rollouts(obj), title=title), full_html=False))
    display(html)
    return html
