"""Reverse-mode gradients of the mass-spring system against central finite differences (f64)."""

import numpy as np
import pytest

import diffsim
from tests.conftest import use
from tests.gradients import assert_gradcheck
from tests.springs.bodies import square, trajectory_target

STEPS = 120
DT = 2e-3


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def build(controller=None, actuated=False, ground=True, storage="full", k=None, batch=1, dim=2):
    model = square(dim=dim, actuated=actuated)
    system = diffsim.SpringSystem(
        model,
        dt=DT,
        ground=0.0 if ground else None,
        friction=0.6,
        contact_stiffness=3000.0,
        contact_damping=5.0,
        controller=controller,
        batch=batch,
    )
    target = trajectory_target(system, STEPS, every=5)
    loss = diffsim.PointLoss(target, every=5) + 0.5 * diffsim.CenterOfMassLoss(
        direction=[1.0] + [0.0] * (dim - 1)
    )
    return diffsim.Simulation(system, STEPS, loss=loss, storage=storage, checkpoint_every=k)


@pytest.mark.parametrize("dim", [2, 3])
def test_physical_parameters_with_ground_contact(dim):
    sim = build(dim=dim)
    # The body lands during the rollout: contact and friction are active in the gradients being checked.
    traj_x = None
    sim.forward()
    traj_x = sim.trajectory()["x"]
    assert traj_x[:, 0, :, -1].min() < 0.0, "test set-up: the body must touch the ground"
    assert_gradcheck(
        sim,
        [
            "springs.stiffness",
            "springs.damping",
            "springs.rest_length",
            "particles.mass",
            "ground.friction",
            "initial.position",
            "initial.velocity",
            "gravity",
            "ground.stiffness",
            "ground.damping",
        ],
    )


def test_open_loop_actions():
    sim = build(controller=diffsim.OpenLoop(2, STEPS, init=0.3), actuated=True)
    assert_gradcheck(sim, ["controller.actions", "springs.actuation"], coordinates=6)


def test_periodic_weights_and_frequency():
    sim = build(controller=diffsim.Periodic(2, frequency=3.0, harmonics=2, init_scale=0.5), actuated=True)
    assert_gradcheck(sim, ["controller.weights", "controller.frequency"])


@pytest.mark.slow  # ~30 s of compiling on 2 cores: `make test-slow`
def test_mlp_weights():
    sim = build(
        controller=diffsim.MLP(2, hidden=(8, 6), n_phases=2, frequency=2.0, init_scale=1.5), actuated=True
    )
    assert_gradcheck(
        sim, ["controller.w0", "controller.b0", "controller.w1", "controller.w2", "controller.b2"]
    )


@pytest.mark.slow  # ~30 s of compiling on 2 cores: `make test-slow`
def test_checkpointed_equals_full_with_uneven_segments():
    """K = 17 does not divide T = 120; the trajectory loss has terms in every segment."""
    ctrl = lambda: diffsim.MLP(2, hidden=(8,), n_phases=2, init_scale=1.5)  # noqa: E731
    full = build(controller=ctrl(), actuated=True)
    l_full, g_full = full.value_and_grad()
    ck = build(controller=ctrl(), actuated=True, storage="checkpointed", k=17)
    assert ck.K == 17 and len(ck.segments) == 8
    l_ck, g_ck = ck.value_and_grad()
    assert abs(l_ck - l_full) <= 1e-12 * abs(l_full)
    for name, g in g_full.items():
        scale = np.abs(g).max()
        if scale == 0:
            assert np.abs(g_ck[name]).max() == 0, name
            continue
        assert np.abs(g_ck[name] - g).max() <= 1e-10 * scale, name


def test_checkpointed_gradcheck():
    sim = build(storage="checkpointed", k=13)
    assert_gradcheck(sim, ["springs.stiffness", "initial.velocity"])


def test_gradients_zeroed_between_backward_passes():
    sim = build()
    _, g1 = sim.value_and_grad()
    _, g2 = sim.value_and_grad()
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name])


@pytest.mark.slow
def test_fast_launch_matches_taichi_call(monkeypatch):
    """The fast launch path (engine/launch.py) gives bit-identical results to Taichi's ordinary kernel call."""
    ctrl = lambda: diffsim.MLP(2, hidden=(4,), n_phases=1)  # noqa: E731
    fast = build(controller=ctrl(), actuated=True)
    l1, g1 = fast.value_and_grad()
    monkeypatch.setenv("DIFFSIM_SLOW_LAUNCH", "1")
    slow = build(controller=ctrl(), actuated=True)
    assert slow._step._fast is False or slow._step._ready is False
    l2, g2 = slow.value_and_grad()
    assert not slow._step._fast
    assert l1 == l2
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name])
