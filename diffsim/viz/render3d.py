"""Offscreen 3D rendering of particles, line segments and triangle meshes to a PNG or an animation.

Coordinates are in metres with y up; an optional ground plane lies at y = ground_y.

Two renderers, chosen by `render_3d(renderer=...)`:

- "ggui": Taichi's GGUI (Vulkan) with an offscreen window, ``ti.ui.Window(title, (w, h), show_window=False)``; the
  scene's particles, lines and meshes are drawn from Taichi fields allocated for the call (one SNode tree, destroyed
  afterwards) and read back with ``window.get_image_buffer_as_numpy()``. Shaded spheres, fast (tens of ms a frame).
- "matplotlib": mplot3d (scatter markers, `Line3DCollection`, `Poly3DCollection`) on an Agg canvas. Works
  everywhere, slower (a full redraw per frame) and with painter's-algorithm depth sorting only.
- "auto" (default): GGUI when `ggui_available()`, else matplotlib; if GGUI fails mid-render, matplotlib re-renders
  the whole file. The renderer used is logged once per process (logger "diffsim.viz"); falling back to matplotlib
  also warns once, with the reason.

GGUI needs Taichi initialised (this module calls `diffsim.runtime.ensure_init()`, which starts the default backend if
nobody has) and a Vulkan device, whatever the compute backend: under arch=cpu GGUI still renders through Vulkan
and copies the fields to it (verified here); under cuda it uses CUDA-Vulkan interop (not verified here, no GPU).

Probe on the development machine (no GPU, no display, Debian mesa lavapipe software Vulkan, Taichi 1.7.4):
offscreen GGUI works both under ``runtime.init(arch="vulkan")`` and under ``runtime.init(arch="cpu")``; no DISPLAY is
needed, and the two give identical pixels. On 2 cores a 640 x 480 frame of 200 spheres and a ground plane takes about
30 ms, after about 0.3-0.5 s for the first frame (pipeline creation). Findings that shaped the code:

- ``get_image_buffer_as_numpy()`` returns float32 RGBA in [0, 1] with shape (width, height, 4), x first and y
  pointing up, so it is transposed and flipped to an image (H, W, 3).
- Each frame's draw list is consumed by the read-back: frames do not accumulate, and ``window.show()`` is not needed.
- Windows can be created and destroyed repeatedly in one process, and after ``runtime.init`` re-initialises Taichi.
- Destroying the first window writes Dear ImGui's ``imgui.ini`` into the current directory; it is removed again
  when this module created it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from diffsim.errors import DiffsimError

from ._common import as_index_pairs, as_positions, check_fps, figure_rgb, frame_indices, new_figure
from .io import PathLike, animation_kind, progress_bar, write_frames

log = logging.getLogger("diffsim.viz")

RENDERERS = ("auto", "ggui", "matplotlib")

PARTICLE_COLOR = (0.22, 0.45, 0.85)
EDGE_COLOR = (0.2, 0.2, 0.2)
MESH_COLOR = (0.86, 0.55, 0.3)
GROUND_COLOR = (0.78, 0.78, 0.76)
SOLID_COLOR = (0.62, 0.62, 0.66)
TARGET_COLOR = (0.88, 0.13, 0.54)
BACKGROUND_COLOR = (1.0, 1.0, 1.0)

_ggui_probe: dict[str, tuple[bool, str]] = {}  # arch -> (works, reason when not)
_announced: set[str] = set()


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: where it is, what it looks at, which way is up, and its vertical field of view (degrees)."""

    position: tuple[float, float, float]
    lookat: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov: float = 45.0

    @staticmethod
    def from_any(camera: Camera | Mapping | None, lo: np.ndarray, hi: np.ndarray) -> Camera:
        """A `Camera`, a mapping with the same keys (position and lookat required), or None for `default_camera`."""
        if camera is None:
            return default_camera(lo, hi)
        if isinstance(camera, Camera):
            cam = camera
        elif isinstance(camera, Mapping):
            unknown = set(camera) - {"position", "lookat", "up", "fov"}
            if unknown or not {"position", "lookat"} <= set(camera):
                raise DiffsimError(
                    "camera needs keys position and lookat (optional: up, fov)"
                    + (f"; unknown: {', '.join(sorted(map(str, unknown)))}" if unknown else ""),
                    where="camera",
                )
            cam = Camera(**{k: camera[k] for k in camera})
        else:
            raise DiffsimError(f"expected a Camera or a mapping, got {type(camera).__name__}", where="camera")
        vectors = [np.asarray(v, dtype=np.float64) for v in (cam.position, cam.lookat, cam.up)]
        if any(v.shape != (3,) or not np.all(np.isfinite(v)) for v in vectors):
            raise DiffsimError("position, lookat and up must be 3 finite numbers each", where="camera")
        if np.linalg.norm(vectors[0] - vectors[1]) == 0 or not 1.0 < float(cam.fov) < 179.0:
            raise DiffsimError(
                "position must differ from lookat, and fov be in (1, 179) degrees", where="camera"
            )
        position, lookat, up = (tuple(float(c) for c in v) for v in vectors)
        return Camera(position, lookat, up, float(cam.fov))


def default_camera(lo: np.ndarray, hi: np.ndarray, fov: float = 45.0) -> Camera:
    """Look at the centre of the box [lo, hi] from the front (+z), right and above, far enough to see all of it."""
    centre = 0.5 * (np.asarray(lo) + np.asarray(hi))
    radius = max(0.5 * float(np.linalg.norm(np.asarray(hi) - np.asarray(lo))), 1e-3)
    direction = np.array([0.55, 0.45, 1.0])
    direction /= np.linalg.norm(direction)
    distance = 1.1 * radius / math.sin(math.radians(fov) / 2)  # the bounding sphere fits the vertical view
    position = centre + distance * direction
    return Camera(tuple(position.tolist()), tuple(centre.tolist()), (0.0, 1.0, 0.0), fov)


def _announce(renderer: str, reason: str | None = None) -> None:
    """Say once per process which renderer is used; warn once when "auto" had to fall back to matplotlib."""
    key = renderer if reason is None else f"{renderer} (fallback)"
    if key in _announced:
        return
    _announced.add(key)
    if reason is None:
        log.info("diffsim.viz: 3D rendering with %s", renderer)
    else:
        msg = f"diffsim.viz: 3D rendering with matplotlib because Taichi GGUI is unavailable ({reason})"
        log.info(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------------------------- GGUI


def _imgui_ini_cleanup():
    """Dear ImGui writes imgui.ini into the working directory when a window is destroyed; undo that if it is ours."""
    existed = os.path.exists("imgui.ini")

    def cleanup() -> None:
        if not existed and os.path.isfile("imgui.ini"):
            try:
                os.remove("imgui.ini")
            except OSError:
                pass

    return cleanup


def _probe_ggui() -> tuple[bool, str]:
    from diffsim import runtime

    if "vulkan" not in runtime.available_archs():
        return False, "no Vulkan driver found (Taichi built without Vulkan, or no ICD file)"
    import taichi as ti

    cleanup = _imgui_ini_cleanup()
    window = None
    try:
        window = ti.ui.Window("diffsim probe", (16, 16), show_window=False)
        window.get_canvas().set_background_color(BACKGROUND_COLOR)
        image = window.get_image_buffer_as_numpy()
        if image.shape[:2] != (16, 16):
            return False, f"unexpected image buffer shape {image.shape}"
        return True, ""
    except Exception as exc:  # noqa: BLE001 - GGUI raises RuntimeError (or others) from C++ when Vulkan fails
        return False, f"{type(exc).__name__}: {exc}".strip()
    finally:
        if window is not None:
            window.destroy()
        cleanup()


def ggui_available() -> bool:
    """Whether Taichi GGUI can render offscreen here, under the current Taichi backend.

    Probes once per backend by opening (and destroying) a tiny offscreen window; initialises Taichi with
    `diffsim.runtime.ensure_init()` if nobody has.
    """
    return _ggui_status()[0]


def _ggui_status() -> tuple[bool, str]:
    from diffsim import runtime

    runtime.ensure_init()
    arch = runtime.current()["arch"]
    if arch not in _ggui_probe:
        _ggui_probe[arch] = _probe_ggui()
    return _ggui_probe[arch]


class _GguiScene:
    """An offscreen GGUI window plus the Taichi fields it draws from, for one render call (a context manager)."""

    def __init__(self, pos, edges, faces, ground, size, camera: Camera, radius: float):
        self.pos, self.edges, self.faces, self.ground = pos, edges, faces, ground
        self.size, self.cam, self.radius = size, camera, radius
        self.window = self.tree = None

    def __enter__(self):
        import taichi as ti

        self._cleanup_ini = _imgui_ini_cleanup()
        n = self.pos.shape[1]
        # One SNode tree per call, destroyed on exit: fields made with plain ti.field would each add a tree that
        # lives until the next ti.init, and backends cap the number of trees.
        fb = ti.FieldsBuilder()
        self.x = ti.Vector.field(3, ti.f32)
        fb.dense(ti.i, n).place(self.x)
        self.edge_idx = self.face_idx = self.ground_x = self.ground_idx = None
        if len(self.edges):
            self.edge_idx = ti.field(ti.i32)
            fb.dense(ti.i, self.edges.size).place(self.edge_idx)
        if len(self.faces):
            self.face_idx = ti.field(ti.i32)
            fb.dense(ti.i, self.faces.size).place(self.face_idx)
        if self.ground is not None:
            self.ground_x = ti.Vector.field(3, ti.f32)
            self.ground_idx = ti.field(ti.i32)
            fb.dense(ti.i, 4).place(self.ground_x)
            fb.dense(ti.i, 6).place(self.ground_idx)
        self.tree = fb.finalize()
        try:
            if self.edge_idx is not None:
                self.edge_idx.from_numpy(self.edges.reshape(-1).astype(np.int32))
            if self.face_idx is not None:
                self.face_idx.from_numpy(self.faces.reshape(-1).astype(np.int32))
            if self.ground is not None:
                self.ground_x.from_numpy(self.ground.astype(np.float32))
                self.ground_idx.from_numpy(np.array([0, 1, 2, 0, 2, 3], dtype=np.int32))
            self.window = ti.ui.Window("diffsim", tuple(int(v) for v in self.size), show_window=False)
            self.canvas = self.window.get_canvas()
            self.scene = self.window.get_scene()
            self.camera = ti.ui.Camera()
            self.camera.position(*self.cam.position)
            self.camera.lookat(*self.cam.lookat)
            self.camera.up(*self.cam.up)
            self.camera.fov(self.cam.fov)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def render(self, t: int) -> np.ndarray:
        """Draw frame t and return it as (H, W, 3) uint8."""
        self.x.from_numpy(np.ascontiguousarray(self.pos[t], dtype=np.float32))
        scene = self.scene
        scene.set_camera(self.camera)
        scene.ambient_light((0.45, 0.45, 0.45))
        scene.point_light(pos=self.cam.position, color=(0.65, 0.65, 0.65))
        if self.ground is not None:
            scene.mesh(self.ground_x, indices=self.ground_idx, color=GROUND_COLOR, two_sided=True)
        if self.face_idx is not None:
            scene.mesh(self.x, indices=self.face_idx, color=MESH_COLOR, two_sided=True)
        if self.edge_idx is not None:
            scene.lines(self.x, width=2.0, indices=self.edge_idx, color=EDGE_COLOR)
        if self.radius > 0:
            scene.particles(self.x, radius=self.radius, color=PARTICLE_COLOR)
        self.canvas.set_background_color(BACKGROUND_COLOR)
        self.canvas.scene(scene)
        # (width, height, 4) float, y up -> (height, width, 3) uint8, row 0 at the top
        rgba = self.window.get_image_buffer_as_numpy()
        image = np.flipud(np.transpose(rgba[..., :3], (1, 0, 2)))
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def __exit__(self, *exc_info) -> None:
        if self.window is not None:
            self.window.destroy()
            self.window = None
        if self.tree is not None:
            self.tree.destroy()
            self.tree = None
        self._cleanup_ini()


# ---------------------------------------------------------------------------------------------------------- matplotlib


class _MatplotlibScene:
    """The same scene drawn with mplot3d; every frame is a full redraw (3D depth sorting happens at draw time)."""

    def __init__(
        self,
        pos,
        edges,
        faces,
        ground,
        size,
        camera: Camera,
        radius: float,
        lo,
        hi,
        axes=None,
        title=None,
        dt=None,
        solids=(),
        targets=None,
    ):
        from matplotlib.ticker import FuncFormatter
        from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

        self.pos, self.edges, self.faces = pos, edges, faces
        width, height = (int(v) for v in size)
        self.fig = new_figure(width, height)
        ax = self.fig.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d")
        # mplot3d with vertical_axis="y" places the eye at (cos e sin a, sin e, cos e cos a) from the centre.
        d = np.subtract(camera.position, camera.lookat)
        d /= np.linalg.norm(d)
        elev = math.degrees(math.asin(float(np.clip(d[1], -1.0, 1.0))))
        azim = math.degrees(math.atan2(d[0], d[2]))
        ax.view_init(elev=elev, azim=azim, vertical_axis="y")
        ax.set_proj_type("persp", focal_length=1.0 / math.tan(math.radians(camera.fov) / 2))
        span = np.maximum(hi - lo, 0.1 * float(np.max(hi - lo)) or 1.0)
        centre = 0.5 * (lo + hi)
        ax.set_xlim(centre[0] - span[0] / 2, centre[0] + span[0] / 2)
        ax.set_ylim(centre[1] - span[1] / 2, centre[1] + span[1] / 2)
        ax.set_zlim(centre[2] - span[2] / 2, centre[2] + span[2] / 2)
        ax.set_box_aspect(tuple(span), zoom=0.9)  # equal scale on all three axes
        # each drawn axis is labelled with the system's axis it shows; a flipped one has its ticks negated back
        for axis, (name, sign) in zip((ax.xaxis, ax.yaxis, ax.zaxis), axes or _DRAWN_AXES, strict=True):
            axis.set_label_text(f"{name} (m)")
            if sign < 0:
                axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{0.0 - v:g}"))
        self.dt = dt
        self.time_text = None
        if title:
            self.fig.text(0.02, 0.975, title, ha="left", va="top", fontsize=11)
        if dt is not None:
            self.time_text = self.fig.text(
                0.98, 0.975, "", ha="right", va="top", fontsize=10, family="monospace"
            )
        if ground is not None:
            floor = Poly3DCollection([ground], facecolors=GROUND_COLOR, edgecolors="none", alpha=0.6)
            ax.add_collection3d(_drawn_first(floor))
        for verts, tris in solids:  # fixed colliders and obstacles, shaded by matplotlib's light source
            solid = Poly3DCollection(
                verts[tris], facecolors=SOLID_COLOR, edgecolors=SOLID_COLOR, linewidths=0, shade=True
            )
            ax.add_collection3d(solid)
        if targets is not None and len(targets):
            ax.plot(*np.asarray(targets).T, linestyle="", marker="X", markersize=10, color=TARGET_COLOR,
                    markeredgecolor="white", markeredgewidth=0.8, label="target")  # fmt: skip
        self.mesh = None
        if len(faces):
            self.mesh = Poly3DCollection(pos[0][faces], facecolors=MESH_COLOR, edgecolors=(0.4, 0.25, 0.1, 0.5),
                                         linewidths=0.3)  # fmt: skip
            ax.add_collection3d(self.mesh)
        self.lines = None
        if len(edges):
            self.lines = Line3DCollection(pos[0][edges], colors=[EDGE_COLOR], linewidths=1.2)
            ax.add_collection3d(self.lines)
        self.points = None
        if radius > 0:
            # Marker sizes are in points, so the radius is scaled by the pixels per metre at the scene's centre.
            px_per_m = _pixels_per_metre(self.fig, ax, centre, float(np.max(span)))
            size_pt = max(1.5, 2 * radius * px_per_m * 72.0 / self.fig.dpi)
            (self.points,) = ax.plot(*pos[0].T, linestyle="", marker="o", markersize=size_pt,
                                     color=PARTICLE_COLOR, markeredgecolor="0.15", markeredgewidth=0.3)  # fmt: skip

    def render(self, t: int) -> np.ndarray:
        p = self.pos[t]
        if self.points is not None:
            self.points.set_data_3d(p[:, 0], p[:, 1], p[:, 2])
        if self.lines is not None:
            self.lines.set_segments(p[self.edges])
        if self.mesh is not None:
            self.mesh.set_verts(p[self.faces])
        if self.time_text is not None:
            self.time_text.set_text(f"t = {t * self.dt:.3f} s")
        return figure_rgb(self.fig)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def _drawn_first(collection):
    """Make mplot3d draw `collection` before every other artist. mplot3d orders artists by the depth their
    ``do_3d_projection`` returns (farthest first); the ground is one large quad whose depth, taken at one point, can
    come out nearer than the objects standing on it, and it was painted over them. Seen from above, nothing stands
    behind the ground, so it goes first."""
    project = collection.do_3d_projection

    def farthest(*args, **kwargs):
        project(*args, **kwargs)
        return np.inf

    collection.do_3d_projection = farthest
    return collection


#: the renderer's axes (x, y up, z) as (system axis name, sign): the identity
_DRAWN_AXES = (("x", 1), ("y", 1), ("z", 1))


def _pixels_per_metre(fig, ax, centre: np.ndarray, length: float) -> float:
    """Screen pixels per metre near `centre`: the longest projection of a step of `length` along x, y or z."""
    from mpl_toolkits.mplot3d import proj3d

    fig.canvas.draw()  # fixes the projection for the limits and view set so far
    points = np.vstack([centre, centre + length * np.eye(3)])
    xs, ys, _ = proj3d.proj_transform(points[:, 0], points[:, 1], points[:, 2], ax.get_proj())
    pixels = ax.transData.transform(np.column_stack([xs, ys]))
    return float(np.max(np.linalg.norm(pixels[1:] - pixels[0], axis=1))) / length


# ------------------------------------------------------------------------------------------------------------- public


def _scene_box(pos: np.ndarray, ground_y: float | None, radius: float) -> tuple[np.ndarray, np.ndarray]:
    lo = pos.reshape(-1, 3).min(axis=0) - radius
    hi = pos.reshape(-1, 3).max(axis=0) + radius
    if ground_y is not None:
        lo[1] = min(lo[1], ground_y)
        hi[1] = max(hi[1], ground_y)
    return lo, hi


def _ground_quad(lo: np.ndarray, hi: np.ndarray, ground_y: float) -> np.ndarray:
    """Four corners (4, 3) of a square at y = ground_y under the scene, half again as wide as its x-z extent."""
    centre = 0.5 * (lo + hi)
    half = 0.75 * max(float(hi[0] - lo[0]), float(hi[2] - lo[2]), 1e-3)
    x0, x1, z0, z1 = centre[0] - half, centre[0] + half, centre[2] - half, centre[2] + half
    return np.array(
        [[x0, ground_y, z0], [x1, ground_y, z0], [x1, ground_y, z1], [x0, ground_y, z1]], dtype=np.float64
    )


def render_3d(
    positions,
    path: PathLike,
    edges=None,
    faces=None,
    ground_y: float | None = None,
    fps: float = 30,
    stride: int = 1,
    size: tuple[int, int] = (640, 480),
    camera: Camera | Mapping | None = None,
    renderer: str = "auto",
    progress: bool = True,
    *,
    radius: float | None = None,
    axes: tuple | None = None,
    title: str | None = None,
    dt: float | None = None,
    solids=(),
    targets=None,
) -> str:
    """Render 3D particles, segments and triangles to a PNG (the last frame), a GIF or an MP4; return the renderer used.

    positions: (T, n, 3) points (m) over T frames, y up; (n, 3) is one frame.
    path: ".png" (the last frame only), ".gif" or ".mp4" (needs ffmpeg); written atomically.
    edges: (m, 2) integer index pairs into the points, drawn as line segments (springs, cloth edges, links).
    faces: (k, 3) integer index triples into the points, drawn as a triangle mesh (cloth, surfaces).
    ground_y: height (m) of a horizontal ground plane. fps: frames per second written. stride: every stride-th frame.
    size: (width, height) in pixels.
    camera: a `Camera` or a mapping with keys position, lookat (and optionally up, fov in degrees); default looks at
        the centre of every frame's bounding box from the front-right, above.
    renderer: "auto" (GGUI if available, else matplotlib), "ggui" (raise `DiffsimError` if unavailable) or
        "matplotlib".
    radius: sphere radius (m) of the particles; default 0.8 % of the scene's extent; 0 hides them.
    progress: show a tqdm bar when more than 50 frames are rendered.
    axes: for each drawn axis (x, y up, z), the system's axis it shows and its sign, e.g. (("x", 1), ("z", 1),
        ("y", -1)) for a z-up system drawn as (x, z, -y): the matplotlib renderer labels the axes by those names,
        with the ticks in the system's values. title: written at the top left; dt: the time between frames (s),
        to show each frame's time at the top right (matplotlib renderer).
    solids: fixed (vertices (k, 3), triangles (j, 3)) meshes, y up, such as colliders; targets: (m, 3) points
        marked as targets. Both are kept in view (matplotlib renderer; GGUI leaves them out).
    Returns "ggui" or "matplotlib".
    """
    if renderer not in RENDERERS:
        raise DiffsimError(
            f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}", where="renderer"
        )
    kind = animation_kind(path)
    fps = check_fps(fps)
    pos = as_positions(positions, (3,))
    num_frames, n = pos.shape[:2]
    edge_pairs = as_index_pairs(edges if edges is not None else [], 2, n, "edges")
    triangles = as_index_pairs(faces if faces is not None else [], 3, n, "faces")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DiffsimError(f"size must be (width, height) in pixels, got {size!r}", where="size") from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise DiffsimError(f"size must be between 16 and 8192 pixels a side, got {size!r}", where="size")
    extent = float(np.ptp(pos.reshape(-1, 3), axis=0).max()) or 1.0
    if radius is None:
        radius = 0.008 * extent
    if not (np.isfinite(radius) and radius >= 0):
        raise DiffsimError(f"radius must be a non-negative number of metres, got {radius!r}", where="radius")
    solids = [(np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.int64)) for v, t in solids]
    targets = None if targets is None else np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    extra = [v for v, _ in solids] + ([] if targets is None else [targets])
    lo, hi = _scene_box(
        np.concatenate([pos.reshape(-1, 3), *extra]) if extra else pos, ground_y, float(radius)
    )
    ground = None if ground_y is None else _ground_quad(lo, hi, float(ground_y))
    cam = Camera.from_any(camera, lo, hi)
    frames = frame_indices(num_frames, stride, last_only=kind == "png")

    def write(name: str, scene_cls, *extra) -> None:
        scene = scene_cls(pos, edge_pairs, triangles, ground, (width, height), cam, float(radius), *extra)
        with scene, progress_bar(len(frames), progress, f"render_3d ({name})") as bar:

            def rendered():
                for t in frames:
                    yield scene.render(t)
                    bar.update(1)

            write_frames(rendered(), path, fps)

    if renderer in ("auto", "ggui"):
        works, reason = _ggui_status()
        if works:
            try:
                write("ggui", _GguiScene)
                _announce("ggui")
                return "ggui"
            except DiffsimError:
                raise  # a user error (such as ffmpeg failing) would fail the same way with matplotlib
            except Exception as exc:
                if renderer == "ggui":
                    raise DiffsimError(
                        f"Taichi GGUI failed: {type(exc).__name__}: {exc}", where=str(path)
                    ) from exc
                reason = f"it failed while rendering: {type(exc).__name__}: {exc}"
        elif renderer == "ggui":
            raise DiffsimError(f"Taichi GGUI is unavailable: {reason}", where="renderer")
        _announce("matplotlib", reason)
    else:
        _announce("matplotlib")
    write("matplotlib", _MatplotlibScene, lo, hi, axes, title, dt, solids, targets)
    return "matplotlib"
