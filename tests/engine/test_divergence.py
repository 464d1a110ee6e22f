"""The forward check flags a rollout that explodes but stays finite (f64 reaches 1e86 m before it overflows)."""

import numpy as np
import pytest

import diffsim
from diffsim import SimulationError
from diffsim.engine.simulation import DIVERGENCE_FACTOR
from tests.conftest import use

STEPS = 60


@pytest.fixture(scope="module")
def system():
    # One spring, 100 N/m between particles of 0.1 and 0.05 kg (omega = sqrt(k / m_red) = 54.8 rad/s), at dt =
    # 0.05 s: omega dt = 2.74 > 2, so semi-implicit Euler multiplies the stretch by about -5.3 per step, and the
    # lighter particle moves twice as far as the other.
    use("cpu", "f64")
    m = diffsim.SpringModel(dim=2)
    m.add_particle([0.0, 0.0], mass=0.1)
    m.add_particle([0.2, 0.0], velocity=[0.1, 0.0], mass=0.05)
    m.add_spring(0, 1, stiffness=100.0)
    with pytest.warns(UserWarning, match="stability limit"):
        return diffsim.SpringSystem(m, dt=0.05, gravity=[0.0, 0.0], ground=None)


def first_past_bound(traj):
    """(frame, quantity) where a state quantity first passes DIVERGENCE_FACTOR x max(1, |its frame 0|), x before v
    at the same frame (the order the check scans them)."""
    hits = []
    for order, name in enumerate(("x", "v")):
        a = np.abs(traj[name]).reshape(len(traj[name]), -1)
        bound = DIVERGENCE_FACTOR * max(1.0, a[0].max())
        frames = np.nonzero(a.max(axis=1) > bound)[0]
        if len(frames):
            hits.append((int(frames[0]), order, name))
    return min(hits)[0], min(hits)[2]


def test_a_finite_explosion_is_an_error_at_the_first_frame_past_the_bound(system):
    free = diffsim.Simulation(system, STEPS)
    free.divergence_factor = None  # NaN and Inf only: this rollout stays finite, so no error
    free.run()
    traj = free.trajectory()
    assert np.all(np.isfinite(traj["x"])) and np.abs(traj["x"][-1]).max() > 1e30
    frame, quantity = first_past_bound(traj)
    assert 0 < frame < STEPS

    for storage in (
        {},
        {"checkpoint_every": 7},
    ):  # the bound comes from frame 0 of the rollout, not the window
        sim = diffsim.Simulation(system, STEPS, **storage)
        with pytest.raises(SimulationError) as err:
            sim.run()
        e = err.value
        assert (e.frame, e.quantity, e.reason_kind) == (frame, quantity, "diverging"), str(e)
        text = str(e)
        assert text.startswith(f"diverging {quantity} at frame {frame} (|{quantity}| = ")
        assert f"> {DIVERGENCE_FACTOR * max(1.0, np.abs(traj[quantity][0]).max()):.3g}" in text
        assert "copy 0, element 1" in text  # the lighter particle
        assert "dt=0.05 s; spring 0 (stiffness 100 N/m, damping 0 N s/m) needs dt < 0.0365 s" in text


def test_a_stable_rollout_is_not_flagged(system):
    p = system.params["springs.stiffness"]
    p.set(np.array([10.0]))  # omega dt = 0.71
    try:
        sim = diffsim.Simulation(system, STEPS)
        sim.run()
        assert np.abs(sim.trajectory()["x"]).max() < 1.0
    finally:
        p.set(np.array([100.0]))
