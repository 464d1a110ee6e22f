"""The MPM scenes: what they build, and the 3D one rendered in 3D (tests/cli runs every scene in short mode)."""

import numpy as np
import pytest

from diffsim.scene.scene import load_scene
from diffsim.scene.trajectory import render_trajectory
from diffsim.systems.mpm.robots import walker2d
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def test_walker_scene_is_diffmpms_robot():
    scene = load_scene("scenes/mpm_walker2d.toml")
    system = scene.build_system()
    assert system.n == 2976 and system.n_act == 4 and system.res == (128, 128)
    np.testing.assert_allclose(system.x0.numpy(), walker2d().finalize()["x"], atol=1e-9)
    assert system.dt == 1e-3 and scene.steps == 1023
    assert system.params["actuation.strength"].numpy() == pytest.approx(4000.0)


def test_throw3d_scene_renders_in_3d(tmp_path):
    scene = load_scene("scenes/mpm_throw3d.toml", overrides=["sim.steps=20"])
    system, sim, task = scene.build()
    assert system.dim == 3 and system.n == 512 and task.fit == ["bodies.velocity"]
    assert scene.data["task"]["loss"]["kind"] == "com_target"
    sim.forward()
    x = sim.trajectory()["x"][:, 0]
    assert x[-1, :, 2].mean() > x[0, :, 2].mean()  # thrown up
    path = tmp_path / "throw.png"
    renderer = render_trajectory(x, scene.drawing(system), path, dt=system.dt, progress=False)
    assert renderer in ("ggui", "matplotlib") and path.stat().st_size > 1000
