"""The viewer's translation of diffsim state into plotly traces and frames (no browser: tests/viz/test_viewer_browser.py
opens the pages in chromium). Trajectories here are made by hand, so that no kernel compiles."""

from __future__ import annotations

import os

import numpy as np
import pytest

from diffsim.errors import DiffsimError
from diffsim.scene.registry import Drawing
from diffsim.scene.trajectory import load_trajectory, save_trajectory

try:
    import plotly  # noqa: F401
except ImportError:
    if os.environ.get("DIFFSIM_REQUIRE_VIEWER") == "1":
        raise
    pytest.skip("the viewer needs plotly (pip install 'diffsim[viewer]')", allow_module_level=True)

from diffsim.viz import viewer  # noqa: E402


def _trajectory(tmp_path, x, drawing, system, name="trajectory.npz", dt=0.01, **extra):
    traj = {drawing.quantity: np.asarray(x)[:, None], **{k: np.asarray(v)[:, None] for k, v in extra.items()}}
    path = save_trajectory(tmp_path / name, traj, drawing, dt=dt, batch=1, system=system, scene="t")
    return load_trajectory(path)


def _falling(frames=11, n=4):
    """n masses falling from 1 m in free fall, z up: z = 1 - g t^2 / 2."""
    t = np.arange(frames) * 0.01
    x = np.zeros((frames, n, 3))
    x[:, :, 0] = np.arange(n) * 0.1
    x[:, :, 2] = (1 - 0.5 * 9.81 * t**2)[:, None]
    return x


def test_rotation_vector_and_quaternion_agree():
    """A rotation of angle a about unit axis k: Rodrigues' matrix equals the quaternion (cos a/2, k sin a/2)'s."""
    k, a = np.array([1.0, 2.0, 2.0]) / 3.0, 0.7
    q = np.concatenate([[np.cos(a / 2)], k * np.sin(a / 2)])
    R1, R2 = viewer._rotation_vector(k * a), viewer._quaternion(q)
    np.testing.assert_allclose(R1, R2, atol=1e-12)
    np.testing.assert_allclose(R1 @ R1.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R1 @ k, k, atol=1e-12)  # the axis is fixed


def test_shape_meshes_have_the_shapes_extents():
    """Box corners at ± the half extents; a capsule spans radius + half length along z and radius across."""
    v, t = viewer._box_mesh([0.1, 0.2, 0.3])
    np.testing.assert_allclose(v.max(axis=0), [0.1, 0.2, 0.3])
    assert t.shape == (12, 3) and t.max() == 7
    # every edge of a closed triangle mesh is shared by exactly two triangles
    edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    assert set(np.unique(edges, axis=0, return_counts=True)[1]) == {2}
    v, _ = viewer._shape_mesh("capsule", [0.05, 0.2])
    np.testing.assert_allclose(v[:, 2].max(), 0.25)
    np.testing.assert_allclose(np.hypot(v[:, 0], v[:, 1]).max(), 0.05, rtol=1e-9)


def test_springs_3d_figure(tmp_path):
    """Frames, slider labels in seconds, axes named after the system's axes (z up), fixed equal-scale ranges."""
    x = _falling()
    drawing = Drawing(quantity="x", dim=3, up_axis=2, edges=np.array([[0, 1], [1, 2], [2, 3]]), ground=0.0)
    r = viewer.Rollout("rollout", _trajectory(tmp_path, x, drawing, "springs"))
    fig = viewer.view_figure([r], max_frames=6)
    assert len(fig.frames) == 6
    labels = [s["label"] for s in fig.layout.sliders[0].steps]
    assert labels[0] == "0" and labels[-1] == "0.1"  # seconds (10 steps of 10 ms)
    assert fig.layout.sliders[0].currentvalue.suffix == " s"
    scene = fig.layout.scene
    assert scene.zaxis.title.text == "z (m)" and scene.camera.up.z == 1
    # the z range holds the fall and the ground; equal scale: aspect ratios proportional to the ranges
    assert scene.zaxis.range[0] < 0 and scene.zaxis.range[1] > 1
    spans = [a.range[1] - a.range[0] for a in (scene.xaxis, scene.yaxis, scene.zaxis)]
    ratios = [scene.aspectratio.x, scene.aspectratio.y, scene.aspectratio.z]
    np.testing.assert_allclose(np.array(ratios) / max(ratios), np.array(spans) / max(spans))
    # the last frame's masses are where the trajectory has them
    last = fig.frames[-1].data
    masses = next(t for t in last if t.name.endswith("masses"))
    np.testing.assert_allclose(masses.z, x[-1, :, 2], atol=1e-5)
    springs = next(t for t in last if t.name.endswith("springs"))
    assert np.isnan(np.asarray(springs.x, dtype=float)).sum() == 3  # three segments
    assert any(t.name == "ground" for t in fig.data)


def test_rigid_bodies_drawn_as_posed_shapes(tmp_path):
    """A box body turned 90 degrees about z: its mesh spans the half extents with x and y swapped, at its position."""
    frames = 3
    x = np.tile([[1.0, 2.0, 0.5]], (frames, 1, 1))
    q = np.tile([[np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]], (frames, 1, 1))
    drawing = Drawing(quantity="x", dim=3, up_axis=2, edges=np.zeros((0, 2), np.int64), ground=0.0)
    data = _trajectory(tmp_path, x, drawing, "rigid", q=q)
    scene = {
        "bodies": [{"name": "b", "position": [1.0, 2.0, 0.5]}],
        "shapes": [{"body": "b", "kind": "box", "size": [0.3, 0.1, 0.05], "offset": None, "rotation": None}],
    }
    fig = viewer.view_figure([viewer.Rollout("r", data, scene)])
    mesh = fig.frames[0].data[0]
    assert mesh.type == "mesh3d"
    np.testing.assert_allclose([min(mesh.x), max(mesh.x)], [0.9, 1.1], atol=1e-5)
    np.testing.assert_allclose([min(mesh.y), max(mesh.y)], [1.7, 2.3], atol=1e-5)
    np.testing.assert_allclose([min(mesh.z), max(mesh.z)], [0.45, 0.55], atol=1e-5)


def test_cloth_colliders_and_target(tmp_path):
    """Cloth as a mesh, the sphere collider drawn (and inside the axis ranges), the loss's target as a marker."""
    x = _falling(frames=4, n=4)
    drawing = Drawing(quantity="x", dim=3, up_axis=2, faces=np.array([[0, 1, 2], [1, 3, 2]]), ground=0.0)
    scene = {
        "colliders": [
            {"kind": "sphere", "position": [0.0, 3.0, 0.3], "radius": 0.3, "rotation": None},
            {"kind": "plane", "position": [0.0, 0.0, 0.0], "rotation": None},
        ],
        "task": {"loss": {"kind": "com_target", "target": [2.0, 0.0, 0.0]}},
    }
    fig = viewer.view_figure([viewer.Rollout("r", _trajectory(tmp_path, x, drawing, "cloth"), scene)])
    assert fig.frames[0].data[0].type == "mesh3d" and fig.frames[0].data[0].name == "r: cloth"
    names = {t.name: t for t in fig.data}
    sphere = names["colliders"]
    np.testing.assert_allclose(max(sphere.y), 3.3, atol=1e-5)
    assert fig.layout.scene.yaxis.range[1] > 3.3
    assert list(names["target"].x) == [2.0] and fig.layout.scene.xaxis.range[1] > 2.0


def test_mpm_particles_coloured_by_material(tmp_path):
    x = _falling(frames=3, n=4)
    drawing = Drawing(quantity="x", dim=3, up_axis=2)
    r = viewer.Rollout("r", _trajectory(tmp_path, x, drawing, "mpm"), None, materials=np.array([0, 0, 1, 1]))
    marker = viewer.view_figure([r]).frames[0].data[0].marker
    assert marker.color[0] == marker.color[1] != marker.color[2] == marker.color[3]


def test_smoke_3d_points_where_the_density_is(tmp_path):
    rho = np.zeros((2, 4, 4, 4, 1))
    rho[:, 1, 2, 3, 0] = 1.0
    drawing = Drawing(quantity="scalars", dim=3, up_axis=2, grid=True)
    scene = {"grid": {"cell_size": 0.5}}
    fig = viewer.view_figure([viewer.Rollout("r", _trajectory(tmp_path, rho, drawing, "smoke"), scene)])
    pts = fig.frames[0].data[0]
    # the cell (1, 2, 3) of size 0.5 m has its centre at (0.75, 1.25, 1.75) m
    assert (list(pts.x), list(pts.y), list(pts.z)) == ([0.75], [1.25], [1.75])
    assert fig.layout.scene.zaxis.title.text == "z (m)"


def test_2d_walker_on_equal_axes_and_before_after_overlaid(tmp_path):
    frames, n = 5, 3
    x = np.zeros((frames, n, 2))
    x[:, :, 0] = np.arange(n)[None] * 0.1 + np.linspace(0, 1, frames)[:, None]
    x[:, :, 1] = 0.2
    drawing = Drawing(quantity="x", dim=2, up_axis=1, edges=np.array([[0, 1], [1, 2]]), ground=0.0)
    after = viewer.Rollout("after", _trajectory(tmp_path, x, drawing, "springs", "a.npz"))
    before = viewer.Rollout("before", _trajectory(tmp_path, x * 0.5, drawing, "springs", "b.npz"))
    fig = viewer.view_figure([after, before])
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.title.text == "y (m)"
    names = [t.name for t in fig.frames[-1].data]
    assert names == ["after: springs", "after: masses", "before: springs", "before: masses"]
    assert fig.frames[-1].data[1].x[0] == pytest.approx(1.0) and fig.frames[-1].data[3].x[0] == pytest.approx(
        0.5
    )


def test_page_is_self_contained(tmp_path):
    x = _falling(frames=3)
    drawing = Drawing(quantity="x", dim=3, up_axis=2)
    _trajectory(tmp_path, x, drawing, "springs")
    page = viewer.write_view(tmp_path, tmp_path / "view.html")
    html = page.read_text()
    assert "<script src=" not in html  # nothing fetched: plotly.js is inlined
    assert "plotly.js v" in html and len(html) > 1_000_000  # the library itself
    assert "Plotly.newPlot" in html and "URLSearchParams(location.hash" in html


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(DiffsimError, match="no trajectory.npz"):
        viewer.load_rollouts(tmp_path)
    with pytest.raises(DiffsimError, match="not a run folder"):
        viewer.load_rollouts(tmp_path / "nothing_here")
