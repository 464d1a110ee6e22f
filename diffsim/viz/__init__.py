"""Visualisation: loss and parameter plots, 2D animations, offscreen 3D rendering.

Everything takes plain numpy arrays (positions in metres, y up), runs headless (matplotlib's Agg canvas, never
`pyplot.show`; Taichi GGUI offscreen for 3D) and writes its output atomically.
"""

from .anim2d import animate_2d, animate_grid, grid_image
from .io import atomic_path
from .plots import plot_loss, plot_param_paths, plot_trajectories
from .render3d import Camera, default_camera, ggui_available, render_3d

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
]
