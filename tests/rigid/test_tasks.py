"""The shipped rigid scenes solve their tasks (slow: each optimizes a full-length rollout)."""

import numpy as np
import pytest

import diffsim
from diffsim.scene import load_scene


def solve(scene):
    scene.init_backend()
    system, sim, task = scene.build()
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    return system, sim, task, result


@pytest.mark.slow
def test_billiards_reaches_the_target():
    """scenes/billiards.toml: from a straight shot that leaves ball 7 16 cm from its target, Adam fits the cue
    ball's position and velocity until the loss is below 1e-4 m^2 (the task's tol), within the task's 100
    iterations. Checked on the rollout itself: ball 7 ends within 1 cm of the target and has stopped
    (|v| < 1 cm/s: "stops at the target", not "passes through it")."""
    scene = load_scene("billiards")
    system, sim, task, result = solve(scene)
    assert result.loss_history[0] > 0.01, "set-up: the first guess must be far from the target"
    assert result.best_loss < 1e-4, result.loss_history
    assert len(result.loss_history) <= 100
    sim.forward()
    traj = sim.trajectory(["x", "v"])
    ball = system.body_index("ball7")
    target = np.array(scene.data["task"]["loss"]["target"][0])
    assert np.linalg.norm(traj["x"][-1, 0, ball] - target) < 0.01
    assert np.linalg.norm(traj["v"][-1, 0, ball]) < 0.01


@pytest.mark.slow
def test_rigid_walker_walks_forward():
    """scenes/rigid_walker2d.toml (2,048 steps, 40 Adam iterations on the periodic controller's weights, no gradient
    clipping): the centre of mass moves right by at least 0.2 m in the 2.05 s rollout (measured: 0.01 m before,
    0.28 m after, f32, 2-core CPU), and the gradient stays bounded (norm < 100 at every iteration; before the
    friction fix of docs/rigid.md it was 1e10-1e16 at this horizon)."""
    system, sim, task, result = solve(load_scene("rigid_walker2d"))
    grad_norms = [h["grad_norm"] for h in result.history]
    assert max(grad_norms) < 100, grad_norms
    assert -result.best_loss >= 0.2, result.loss_history
    sim.forward()
    x = sim.trajectory(["x"])["x"][:, 0, 0]
    assert x[-1, 0] - x[0, 0] > 0.15, "the torso itself moves right"
