"""The articulated system against MuJoCo itself: the same model file, timestep and Euler integrator (joint damping
implicit, as MuJoCo's Euler integrator treats it), no contact, in f64."""

import os

import numpy as np
import pytest

import diffsim
from tests.conftest import use

if os.environ.get("DIFFSIM_REQUIRE_ROBOTS") == "1":
    import mujoco
else:
    mujoco = pytest.importorskip("mujoco", reason="the robots extra (mujoco) is not installed")

from diffsim.systems.articulated import ArticulatedSystem, load_robot  # noqa: E402

MODELS = os.path.join(os.path.dirname(diffsim.__file__), "systems", "articulated", "models")

# compiling the unrolled step takes tens of seconds: `make test-slow`
pytestmark = pytest.mark.slow


def test_pendulum_chain_follows_mujoco_to_rounding_over_1000_steps():
    """A 3-hinge chain (one axis tilted, one link rotated) from a random state under gravity: joint angles agree to
    1e-9 rad at every one of 1,000 steps (measured: 3e-15 rad)."""
    use("cpu", "f64")
    path = os.path.join(MODELS, "pendulum_chain.xml")
    model = load_robot(path)
    mj = mujoco.MjModel.from_xml_path(path)
    data = mujoco.MjData(mj)
    rng = np.random.default_rng(0)
    q0 = mj.qpos0 + 0.3 * rng.standard_normal(mj.nq)
    v0 = 0.5 * rng.standard_normal(mj.nv)
    model.qpos0, model.qvel0 = q0.copy(), v0.copy()
    steps = 1000
    sim = diffsim.Simulation(ArticulatedSystem(model), steps)
    sim.forward()
    q = sim.trajectory()["q"][:, 0]
    data.qpos[:], data.qvel[:] = q0, v0
    mujoco.mj_forward(mj, data)
    reference = [data.qpos.copy()]
    for _ in range(steps):
        mujoco.mj_step(mj, data)
        reference.append(data.qpos.copy())
    reference = np.array(reference)
    assert np.abs(reference - q0).max() > 0.5  # it swings: the agreement is not that of two resting chains
    assert np.abs(q - reference).max() < 1e-9, np.abs(q - reference).max()
