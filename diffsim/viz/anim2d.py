"""2D animations of particles and springs, and images of grid quantities, rendered headless with matplotlib.

Frames are drawn on a matplotlib Agg canvas (no display, no pyplot), read back as RGB arrays and written by
`diffsim.viz.io`: a looping GIF (Pillow), an MP4 (ffmpeg, when installed) or, for a ".png" path, one still image of the
last frame. All writes are atomic.

Coordinates are in metres, y up. The axis bounds are fixed for the whole animation (computed from every frame unless
given) with equal aspect, so motion is not distorted and frames line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffsim.errors import DiffsimError

from ._common import (
    BlitRenderer,
    as_index_pairs,
    as_positions,
    check_fps,
    figure_rgb,
    frame_indices,
    new_figure,
)
from .io import PathLike, animation_kind, check_still_suffix, progress_bar, write_frames, write_png

#: Colormap for actuated springs: -1 blue, 0 white-grey, +1 red.
ACTION_CMAP = "coolwarm"

_MARGIN_PX = {"left": 60, "right": 16, "bottom": 50, "top": 32}


def _bounds_2d(
    pos: np.ndarray, radius_max: float, ground_y: float | None
) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) enclosing every frame, the particle radii and the ground line, with a 5 % margin."""
    lo = pos.reshape(-1, 2).min(axis=0) - radius_max
    hi = pos.reshape(-1, 2).max(axis=0) + radius_max
    if ground_y is not None:
        lo[1] = min(lo[1], ground_y)
        hi[1] = max(hi[1], ground_y)
    span = hi - lo
    scale = float(span.max()) if span.max() > 0 else 1.0
    span = np.where(
        span > 1e-9 * scale, span, scale
    )  # a degenerate axis (all points on a line) gets the other's span
    centre = 0.5 * (lo + hi)
    lo, hi = centre - 0.5 * span * 1.1, centre + 0.5 * span * 1.1
    if ground_y is not None:
        lo[1] = min(lo[1], ground_y - 0.05 * span[1])  # always show a strip of ground
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _check_bounds(bounds) -> tuple[float, float, float, float]:
    b = tuple(float(v) for v in np.ravel(bounds))
    if len(b) != 4 or not (b[0] < b[1] and b[2] < b[3]) or not np.all(np.isfinite(b)):
        raise DiffsimError(
            f"bounds must be (xmin, xmax, ymin, ymax) with min < max, got {bounds!r}", where="bounds"
        )
    return b  # type: ignore[return-value]


def _figure_for_bounds(bounds, size: tuple[int, int] | None, extra_right: int = 0):
    """A figure whose plot area has the aspect of `bounds`; returns (fig, ax)."""
    xmin, xmax, ymin, ymax = bounds
    m = _MARGIN_PX
    if size is None:
        width = 640
        area_w = width - m["left"] - m["right"] - extra_right
        area_h = int(np.clip(round(area_w * (ymax - ymin) / (xmax - xmin)), 200, 900))
        height = area_h + m["bottom"] + m["top"]
        height += height % 2  # even sizes, which H.264 needs
    else:
        width, height = (int(v) for v in size)
        if width < 64 or height < 64:
            raise DiffsimError(f"size must be at least 64 x 64 pixels, got {size!r}", where="size")
    fig = new_figure(width, height)
    ax = fig.add_axes(
        (
            m["left"] / width,
            m["bottom"] / height,
            (width - m["left"] - m["right"] - extra_right) / width,
            (height - m["bottom"] - m["top"]) / height,
        )
    )
    return fig, ax


def _particle_colors(colors, n: int) -> np.ndarray:
    from matplotlib.colors import to_rgba_array

    if colors is None:
        colors = "C0"
    try:
        rgba = to_rgba_array(colors)
    except (ValueError, TypeError) as exc:
        raise DiffsimError(f"not a colour or list of colours: {exc}", where="colors") from None
    if len(rgba) not in (1, n):
        raise DiffsimError(f"expected 1 or {n} colours (one per particle), got {len(rgba)}", where="colors")
    return np.broadcast_to(rgba, (n, 4)).copy()


def _particle_radii(radii, n: int, default: float) -> np.ndarray:
    if radii is None:
        return np.full(n, default)
    r = np.asarray(radii, dtype=np.float64)
    if r.ndim == 0:
        r = np.full(n, float(r))
    if r.shape != (n,) or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise DiffsimError(
            f"expected one non-negative radius or {n} of them, got shape {np.shape(radii)}", where="radii"
        )
    return r


def _actuation(actuated, actions, num_springs: int, num_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (indices of actuated springs (k,), actions per frame for them (T, k) or None)."""
    if actuated is None:
        idx = np.arange(num_springs) if actions is not None else np.zeros(0, dtype=np.int64)
    else:
        a = np.asarray(actuated)
        if a.dtype == bool:
            if a.shape != (num_springs,):
                raise DiffsimError(
                    f"boolean mask must have shape ({num_springs},), got {a.shape}", where="actuated"
                )
            idx = np.flatnonzero(a)
        else:
            idx = np.atleast_1d(a).astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= num_springs):
                raise DiffsimError(f"spring index out of range [0, {num_springs})", where="actuated")
    if actions is None:
        return idx, None
    act = np.asarray(actions, dtype=np.float64)
    if act.ndim != 2 or act.shape[0] != num_frames or act.shape[1] not in (num_springs, idx.size):
        raise DiffsimError(
            f"expected shape ({num_frames}, {num_springs}) (one column per spring) or ({num_frames}, {idx.size}) "
            f"(one per actuated spring), got {act.shape}",
            where="actions",
        )
    if act.shape[1] == num_springs and idx.size != num_springs:
        act = act[:, idx]
    return idx, act


def animate_2d(
    positions,
    path: PathLike,
    springs=None,
    fps: float = 30,
    stride: int = 1,
    ground_y: float | None = None,
    title: str | None = None,
    colors=None,
    radii=None,
    progress: bool = True,
    bounds: Sequence[float] | None = None,
    actuated=None,
    actions=None,
    *,
    size: tuple[int, int] | None = None,
) -> Path:
    """Animate 2D particles (and springs between them) to a GIF, an MP4 or a still PNG of the last frame.

    positions: (T, n, 2) particle or body centres (m) over T frames; (n, 2) is one frame.
    path: ".gif" (Pillow), ".mp4" (needs ffmpeg) or ".png" (the last frame only); written atomically. Any other
        suffix, or ".mp4" without ffmpeg, raises `DiffsimError` before anything is rendered.
    springs: (m, 2) integer index pairs, drawn as lines between the particles.
    fps: frames per second of the written animation. stride: render every stride-th simulation frame.
    ground_y: height (m) of a horizontal ground line; the region below it is shaded.
    title: shown above the plot with the frame number.
    colors: one matplotlib colour, or one per particle (n colours, names or RGB(A) rows in [0, 1]).
    radii: particle radius (m), one for all or (n,); default 1.2 % of the scene's extent. Drawn to scale.
    progress: show a tqdm progress bar when more than 50 frames are rendered.
    bounds: (xmin, xmax, ymin, ymax) in metres; default encloses every frame with a 5 % margin.
    actuated: which springs are actuated: a boolean mask (m,) or spring indices; drawn thicker. With `actions` and no
        `actuated`, every spring is actuated.
    actions: (T, m) (one column per spring) or (T, k) (one per actuated spring) actuation in [-1, 1], colouring the
        actuated springs with a diverging colormap (-1 blue, +1 red).
    size: (width, height) in pixels; default 640 wide with the height following the bounds' aspect.
    Returns the path written.
    """
    kind = animation_kind(path)
    fps = check_fps(fps)
    pos = as_positions(positions, (2,))
    num_frames, n = pos.shape[:2]
    pairs = as_index_pairs(springs if springs is not None else [], 2, n, "springs")
    act_idx, act = _actuation(actuated, actions, len(pairs), num_frames)

    extent = float(np.ptp(pos.reshape(-1, 2), axis=0).max()) or 1.0
    r = _particle_radii(radii, n, 0.012 * extent)
    box = (
        _check_bounds(bounds) if bounds is not None else _bounds_2d(pos, float(r.max(initial=0.0)), ground_y)
    )
    rgba = _particle_colors(colors, n)
    frames = frame_indices(num_frames, stride, last_only=kind == "png")

    from matplotlib import colormaps
    from matplotlib.collections import EllipseCollection, LineCollection

    fig, ax = _figure_for_bounds(box, size)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    if ground_y is not None:
        ax.axhspan(box[2], ground_y, color="0.88", zorder=0)
        ax.axhline(ground_y, color="0.3", linewidth=1.5, zorder=1)

    passive_color = np.array([0.45, 0.45, 0.45, 1.0])
    widths = np.full(len(pairs), 1.2)
    widths[act_idx] = 2.4
    base_colors = np.tile(passive_color, (len(pairs), 1))
    base_colors[act_idx] = (0.9, 0.5, 0.1, 1.0)  # actuated, no actions given
    cmap = colormaps[ACTION_CMAP]
    lines = LineCollection([], linewidths=widths, colors=base_colors, zorder=2)
    ax.add_collection(lines)
    discs = EllipseCollection(
        widths=2 * r, heights=2 * r, angles=0.0, units="xy", offsets=pos[0], offset_transform=ax.transData,
        facecolors=rgba, edgecolors="0.15", linewidths=0.4, zorder=3,
    )  # fmt: skip
    ax.add_collection(discs)
    label = ax.set_title("")
    blit = BlitRenderer(fig, [lines, discs, label])

    def render(t: int) -> np.ndarray:
        discs.set_offsets(pos[t])
        if len(pairs):
            lines.set_segments(pos[t][pairs])
            if act is not None:
                seg_colors = base_colors.copy()
                seg_colors[act_idx] = cmap(0.5 * (np.clip(act[t], -1.0, 1.0) + 1.0))
                lines.set_color(seg_colors)
        head = f"{title}   " if title else ""
        label.set_text(f"{head}frame {t}/{num_frames - 1}")
        return blit.frame()

    return write_frames(_rendered(render, frames, progress, "animate_2d"), path, fps)


def _rendered(render, frames: Sequence[int], progress: bool, desc: str):
    """Yield render(t) for each frame, advancing a progress bar."""
    with progress_bar(len(frames), progress, desc) as bar:
        for t in frames:
            yield render(t)
            bar.update(1)


def _grid_figure(shape_hw: tuple[int, int], colorbar: bool):
    h, w = shape_hw
    scale = 480.0 / max(h, w)
    box = (0.0, max(w * scale, 160.0), 0.0, max(h * scale, 160.0))
    return _figure_for_bounds(box, None, extra_right=90 if colorbar else 0)


def _draw_grid(ax, fig, field: np.ndarray, cmap: str, vmin: float, vmax: float, origin: str, colorbar: bool):
    image = ax.imshow(
        field, cmap=cmap, vmin=vmin, vmax=vmax, origin=origin, interpolation="nearest", aspect="equal"
    )
    ax.set_xlabel("j (cells)")
    ax.set_ylabel("i (cells)")
    if colorbar:
        pos = ax.get_position()
        cax = fig.add_axes((pos.x1 + 0.02, pos.y0, 0.03, pos.height))
        fig.colorbar(image, cax=cax)
    return image


def _as_grids(frames, name: str) -> np.ndarray:
    arr = np.asarray(frames, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise DiffsimError(f"expected shape (T, H, W) or (H, W), got {np.shape(frames)}", where=name)
    return arr


def _value_range(arr: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    finite = arr[np.isfinite(arr)]
    lo = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _check_origin(origin: str) -> str:
    if origin not in ("lower", "upper"):
        raise DiffsimError(f"origin must be 'lower' or 'upper', got {origin!r}", where="origin")
    return origin


def grid_image(
    field2d,
    path: PathLike,
    cmap: str = "inferno",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    origin: str = "lower",
    colorbar: bool = True,
) -> Path:
    """Write one grid quantity (for example smoke density) as a PNG image with a colour bar.

    field2d: (H, W) values, row i and column j. With origin="lower" (default) row 0 is at the bottom, so a field
        indexed [x, y] (Taichi's layout) is passed transposed: ``grid_image(density.T, ...)``.
    path: ".png", written atomically.
    cmap: matplotlib colormap name. vmin, vmax: colour range; default the field's finite min and max.
    Returns the path written.
    """
    check_still_suffix(path, (".png",))
    arr = _as_grids(field2d, "field2d")
    if arr.shape[0] != 1:
        raise DiffsimError(
            f"expected one (H, W) field, got {np.shape(field2d)}; use animate_grid", where="field2d"
        )
    lo, hi = _value_range(arr, vmin, vmax)
    fig, ax = _grid_figure(arr.shape[1:], colorbar)
    _draw_grid(ax, fig, arr[0], cmap, lo, hi, _check_origin(origin), colorbar)
    if title:
        ax.set_title(title)
    return write_png(figure_rgb(fig), path)


def animate_grid(
    frames,
    path: PathLike,
    fps: float = 30,
    stride: int = 1,
    cmap: str = "inferno",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    origin: str = "lower",
    colorbar: bool = True,
    progress: bool = True,
) -> Path:
    """Animate a grid quantity over time to a GIF, an MP4 or a still PNG of the last frame.

    frames: (T, H, W) values per frame (see `grid_image` for the layout).
    path: ".gif", ".mp4" (needs ffmpeg) or ".png" (last frame); written atomically.
    vmin, vmax: colour range, fixed for the whole animation; default the finite min and max over all frames.
    Returns the path written.
    """
    kind = animation_kind(path)
    fps = check_fps(fps)
    arr = _as_grids(frames, "frames")
    lo, hi = _value_range(arr, vmin, vmax)
    fig, ax = _grid_figure(arr.shape[1:], colorbar)
    image = _draw_grid(ax, fig, arr[0], cmap, lo, hi, _check_origin(origin), colorbar)
    label = ax.set_title("")
    num_frames = arr.shape[0]
    blit = BlitRenderer(fig, [image, label])

    def render(t: int) -> np.ndarray:
        image.set_data(arr[t])
        label.set_text(f"{title + '   ' if title else ''}frame {t}/{num_frames - 1}")
        return blit.frame()

    indices = frame_indices(num_frames, stride, last_only=kind == "png")
    return write_frames(_rendered(render, indices, progress, "animate_grid"), path, fps)
