"""The matplotlib 3D renderer (no Vulkan) draws a z-up system faithfully: the vertical axis labelled z, every axis
named after the system's axis it shows with the system's values on its ticks, a title and each frame's time, and
the objects where the camera projects them (checked from the rendered pixels)."""

from __future__ import annotations

import numpy as np
from mpl_toolkits.mplot3d import proj3d
from PIL import Image

from diffsim.scene.trajectory import to_renderer_axes
from diffsim.viz import render3d


def _square(centre, half=0.15):
    """A horizontal square (4 vertices, 2 triangles) of side 2 half (m) centred at `centre`, z up."""
    c = np.asarray(centre, dtype=np.float64)
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64) * half
    return c + corners


def _scene(tmp_path):
    # frame 0 high and to the left, frame 1 low and to the right (z up, metres)
    pos = np.stack([_square([-0.5, 0.2, 1.0]), _square([0.6, -0.3, 0.2])])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    shown, axes = to_renderer_axes(pos, up_axis=2)
    lo, hi = render3d._scene_box(shown, 0.0, 0.0)
    ground = render3d._ground_quad(lo, hi, 0.0)
    cam = render3d.Camera.from_any(None, lo, hi)
    scene = render3d._MatplotlibScene(
        shown,
        np.zeros((0, 2), np.int64),
        faces,
        ground,
        (640, 480),
        cam,
        0.0,
        lo,
        hi,
        axes,
        "square (cloth)",
        0.25,
    )
    return pos, shown, scene


def test_z_up_axes_are_labelled_with_the_systems_names_and_values(tmp_path):
    _, _, scene = _scene(tmp_path)
    ax = scene.fig.axes[0]
    # drawn (x, y up, z) show the system's (x, z, -y)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()) == ("x (m)", "z (m)", "y (m)")
    assert ax.zaxis.get_major_formatter()(-0.5, 0) == "0.5"  # the flipped axis shows the system's y
    scene.render(1)
    texts = [t.get_text() for t in scene.fig.texts]
    assert "square (cloth)" in texts and "t = 0.250 s" in texts


def _pixel(scene, point) -> tuple[int, int]:
    """Image (column, row) of a point in the renderer's axes, through the axes' own projection."""
    ax = scene.fig.axes[0]
    x, y, _ = proj3d.proj_transform(*np.asarray(point, dtype=np.float64), ax.get_proj())
    col, row_up = ax.transData.transform((x, y))
    height = scene.fig.canvas.get_width_height()[1]
    return int(round(col)), int(round(height - row_up))


def test_objects_at_their_projected_positions(tmp_path):
    pos, shown, scene = _scene(tmp_path)
    centres = []
    for t in (0, 1):
        image = scene.render(t).astype(int)
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / f"frame{t}.png")
        col, row = _pixel(scene, shown[t].mean(axis=0))
        window = image[row - 4 : row + 5, col - 4 : col + 5]
        mesh = np.asarray(render3d.MESH_COLOR) * 255
        # shaded or not, the cloth's orange: red well above blue, and near the mesh colour
        assert np.all(window[..., 0] - window[..., 2] > 80), (t, col, row, window.mean(axis=(0, 1)))
        assert np.abs(window.mean(axis=(0, 1)) - mesh).max() < 60
        centres.append((col, row))
    # frame 0 is higher (smaller row) and further left than frame 1, as in the system's coordinates
    assert centres[0][1] < centres[1][1] - 40 and centres[0][0] < centres[1][0] - 40


def test_colliders_and_targets_drawn_and_in_view(tmp_path):
    """A cloth scene's sphere collider is drawn as a shaded solid where it projects, and the loss's target, far
    from the cloth, is inside the axes' limits."""
    from diffsim.scene.trajectory import _scene_extras

    scene = {
        "colliders": [{"kind": "sphere", "position": [0.0, 0.0, 0.3], "radius": 0.3, "rotation": None}],
        "task": {"loss": {"kind": "com_target", "target": [3.0, 0.0, 0.0]}},
    }
    solids, targets = _scene_extras(scene, up_axis=2)
    pos = np.stack([_square([0.0, 0.0, 1.2])])
    shown, axes = to_renderer_axes(pos, up_axis=2)
    every = np.concatenate([shown.reshape(-1, 3), solids[0][0], targets])
    lo, hi = render3d._scene_box(every, 0.0, 0.0)
    cam = render3d.Camera.from_any(None, lo, hi)
    scene3d = render3d._MatplotlibScene(
        shown, np.zeros((0, 2), np.int64), np.array([[0, 1, 2], [0, 2, 3]]), None, (640, 480), cam, 0.0, lo, hi,
        axes, None, None, solids, targets,
    )  # fmt: skip
    image = scene3d.render(0).astype(int)
    col, row = _pixel(scene3d, [0.0, 0.3, 0.0])  # the sphere's centre: renderer (x, z, -y)
    window = image[row - 3 : row + 4, col - 3 : col + 4]
    # shaded grey-blue of the solid: neither the white background nor the cloth's orange
    assert np.all(window.sum(axis=-1) < 3 * 220) and np.all(np.abs(window[..., 0] - window[..., 2]) < 40)
    ax = scene3d.fig.axes[0]
    assert ax.get_xlim()[1] >= 3.0  # the target at x = 3 m is in view
