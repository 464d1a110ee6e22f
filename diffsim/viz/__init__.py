"""Visualisation: loss and parameter plots, 2D animations, offscreen 3D rendering.

`show` displays the interactive viewer (diffsim.viz.viewer, plotly) inline in a notebook. Everything else takes
plain numpy arrays (positions in metres, y up), runs headless (matplotlib's Agg canvas, never
`pyplot.show`; Taichi GGUI offscreen for 3D) and writes its output atomically.
"""

from .anim2d import animate_2d, animate_grid, grid_image
from .io import atomic_path
from .plots import plot_loss, plot_param_paths, plot_trajectories
from .render3d import Camera, default_camera, ggui_available, render_3d


def show(obj, *, title: str | None = None):
    """The interactive viewer inline in Jupyter: a Simulation after forward(), a run folder, a trajectory file or a
    scene (`diffsim.viz.viewer.show`; needs plotly)."""
    from .viewer import show as _show  # noqa: PLC0415

    return _show(obj, title=title)


__all__ = [
    "Camera",
    "animate_2d",
    "animate_grid",
    "atomic_path",
    "default_camera",
    "ggui_available",
    "grid_image",
    "plot_loss",
    "plot_param_paths",
    "plot_trajectories",
    "render_3d",
    "show",
]
