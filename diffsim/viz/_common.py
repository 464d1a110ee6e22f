"""Helpers shared by the viz modules: input checking and headless matplotlib figures.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, never through `pyplot`, so rendering needs no
display, changes no global backend and leaves no figure registered anywhere (nothing to close, nothing to show).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffsim.errors import DiffsimError


def new_figure(width_px: int, height_px: int, dpi: int = 100):
    """A matplotlib Figure of the given pixel size, attached to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_rgb(fig) -> np.ndarray:
    """Draw `fig` and return its pixels as an (H, W, 3) uint8 array (a copy)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class BlitRenderer:
    """Redraw only the artists that change between frames, over a background drawn once.

    Axes, ticks and labels take most of a full matplotlib draw (about 60 ms of a 640 x 360 frame); restoring a saved
    background and drawing the few moving artists makes a frame several times cheaper. The artists must not change the
    layout (fixed axis limits, fixed figure size), which holds for every animation here.
    """

    def __init__(self, fig, artists):
        self.fig = fig
        self.artists = list(artists)
        for artist in self.artists:
            artist.set_animated(True)  # excluded from the full draw, so the background is without them
        fig.canvas.draw()
        self.background = fig.canvas.copy_from_bbox(fig.bbox)

    def frame(self) -> np.ndarray:
        """Draw the current state of the artists over the background; return (H, W, 3) uint8 pixels (a copy)."""
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        for artist in self.artists:
            self.fig.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def as_positions(positions, dims: Sequence[int], name: str = "positions") -> np.ndarray:
    """Check and return positions as a float64 array (T, n, dim); a single frame (n, dim) becomes T = 1."""
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] not in dims or arr.shape[0] == 0 or arr.shape[1] == 0:
        want = " or ".join(f"(T, n, {d})" for d in dims)
        raise DiffsimError(f"expected shape {want}, got {np.shape(positions)}", where=name)
    if not np.all(np.isfinite(arr)):
        t, i = np.argwhere(~np.isfinite(arr))[0][:2]
        raise DiffsimError(f"non-finite value at frame {t}, particle {i}", where=name)
    return arr


def as_index_pairs(pairs, width: int, n: int, name: str) -> np.ndarray:
    """Check connectivity (m, width) of integer indices into n points; returns an int64 array (possibly (0, width))."""
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != width or not np.issubdtype(arr.dtype, np.integer):
        raise DiffsimError(
            f"expected integer array of shape (m, {width}), got {arr.dtype} {arr.shape}", where=name
        )
    if arr.min() < 0 or arr.max() >= n:
        raise DiffsimError(f"index out of range [0, {n}): min {arr.min()}, max {arr.max()}", where=name)
    return arr.astype(np.int64)


def frame_indices(num_frames: int, stride: int, last_only: bool) -> list[int]:
    """Frames to render: every `stride`-th from 0, or just the last one for a still image."""
    if int(stride) < 1:
        raise DiffsimError(f"stride must be a positive integer, got {stride!r}", where="stride")
    if last_only:
        return [num_frames - 1]
    return list(range(0, num_frames, int(stride)))


def check_fps(fps: float) -> float:
    if not np.isfinite(fps) or fps <= 0:
        raise DiffsimError(f"fps must be positive, got {fps!r}", where="fps")
    return float(fps)
