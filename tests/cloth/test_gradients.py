"""Reverse-mode gradients of the cloth system against central finite differences (f64), for every kind of
parameter, with and without collider contact; batch copies and checkpointing."""

import numpy as np
import pytest

import diffsim
from diffsim.colliders import Collider
from diffsim.systems.cloth import ClothModel, ClothSystem
from tests.conftest import use
from tests.gradients import assert_gradcheck as _assert_gradcheck

STEPS = 40
DT = 2e-3
#: finite-difference steps, relative to each parameter's magnitude (`diffsim.engine.gradcheck.step_scale`)
FD_STEPS = (1e-4, 1e-5, 1e-6, 1e-7)


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def loss_for(system, steps=STEPS):
    """A trajectory loss against a perturbed copy of the rollout, plus a centre-of-mass term."""
    sim = diffsim.Simulation(system, steps)
    sim.run()
    x = sim.trajectory()["x"][::5][1:]
    target = x + 0.01 * np.random.default_rng(0).normal(size=x.shape)
    return diffsim.PointLoss(target, every=5) + 0.5 * diffsim.CenterOfMassLoss(direction=[1.0, 0.5, 0.2])


def assert_gradcheck(sim, names, steps=FD_STEPS, **kw):
    return _assert_gradcheck(sim, names, steps=steps, **kw)


def free_cloth(material="corotated", batch=1, per_batch=(), bending_model="dihedral", requires_grad=None):
    """A 4 x 4 cloth tumbling in the wind: tilted, perturbed (so it bends), one pinned corner, a load."""
    model = ClothModel.grid(
        size=(0.3, 0.3),
        resolution=(4, 4),
        center=(0.0, 0.0, 0.5),
        rotation=(0.4, 0.2, 0.0),
        stretch_modulus=150.0,
        poisson_ratio=0.25,
        density=0.3,
        bending_stiffness=0.02,
        stretch_damping=0.002,
        bending_damping=2e-5,
        mass_damping=0.1,
    )
    rng = np.random.default_rng(3)
    model.positions = model.vertices + 0.01 * rng.normal(size=model.vertices.shape)
    model.velocities = rng.normal(size=model.vertices.shape) * 0.3
    model.pin(3)
    model.loads = {12: (0.0, 0.05, -0.1)}
    return ClothSystem(
        model,
        dt=DT,
        material=material,
        bending_model=bending_model,
        wind=(1.0, -0.5, 0.3),
        drag=0.3,
        lift=0.5,
        batch=batch,
        per_batch=per_batch,
        requires_grad=requires_grad,
    )


FREE_PARAMS = [
    "material.stretch_modulus",
    "material.poisson_ratio",
    "material.bending_stiffness",
    "material.density",
    "damping.stretch",
    "damping.bending",
    "damping.mass",
    "gravity",
    "initial.position",
    "initial.velocity",
    "air.wind",
    "air.drag",
    "air.lift",
    "loads.force",
]


@pytest.mark.parametrize("material", ["corotated", pytest.param("stvk", marks=pytest.mark.slow)])
def test_every_parameter_of_a_free_cloth(material):
    system = free_cloth(material)
    assert sorted(FREE_PARAMS) == sorted(system.params.names())
    sim = diffsim.Simulation(system, STEPS, loss=loss_for(system))
    assert_gradcheck(sim, FREE_PARAMS)


def contact_cloth():
    """A 5 x 5 cloth dropped onto a tilted plane, a moving sphere, a box and a capsule (all of them touched), one
    corner dragged by a handle whose velocity is an open-loop action."""
    model = ClothModel.grid(
        size=(0.4, 0.4),
        resolution=(5, 5),
        center=(0.0, 0.0, 0.07),
        rotation=(0.05, 0.0, 0.0),
        velocity=(0.2, 0.0, -0.8),
        stretch_modulus=200.0,
        density=0.3,
        bending_stiffness=0.01,
        stretch_damping=0.002,
        mass_damping=0.1,
    )
    model.add_handles(0)
    colliders = [
        Collider("plane", position=(0.0, 0.0, -0.04), rotation=(0.1, -0.05, 0.0), friction=0.5),
        Collider("sphere", position=(0.1, 0.1, -0.03), size=[0.07], velocity=(0.1, 0.0, 0.0), friction=0.3),
        Collider(
            "box",
            position=(-0.1, 0.1, -0.02),
            rotation=(0.2, 0.3, 0.1),
            size=[0.06, 0.05, 0.04],
            friction=0.4,
        ),
        Collider(
            "capsule",
            position=(0.05, -0.1, -0.01),
            rotation=(0.0, 1.2, 0.2),
            size=[0.05, 0.08],
            velocity=(0.0, 0.05, 0.0),
            friction=0.6,
        ),
    ]
    controller = diffsim.OpenLoop(3, STEPS, init=0.2)
    return ClothSystem(
        model,
        dt=DT,
        colliders=colliders,
        contact_stiffness=3e4,
        contact_damping=20.0,
        friction_smoothing=0.01,
        controller=controller,
    )


@pytest.mark.slow
def test_colliders_contact_and_handles():
    system = contact_cloth()
    sim = diffsim.Simulation(system, STEPS, loss=loss_for(system))
    _, grads = sim.value_and_grad()
    for row, c in enumerate(system.colliders):  # the set-up: every collider is touched
        assert np.abs(grads["colliders.position"][row]).max() > 1e-6, c.kind
    assert_gradcheck(
        sim,
        [
            "colliders.position",
            "colliders.rotation",
            "colliders.velocity",
            "colliders.size",
            "colliders.friction",
            "contact.stiffness",
            "contact.damping",
            "controller.actions",
            "initial.position",
            "initial.velocity",
            "material.stretch_modulus",
            "gravity",
        ],
        coordinates=6,
    )


@pytest.mark.slow
def test_position_handles_driven_by_a_periodic_controller():
    model = ClothModel.grid(
        size=(0.3, 0.3),
        resolution=(4, 4),
        center=(0.0, 0.0, 0.5),
        stretch_modulus=150.0,
        density=0.3,
        bending_stiffness=0.02,
        stretch_damping=0.002,
    )
    model.add_handles(0, 3)
    controller = diffsim.Periodic(6, frequency=2.0, harmonics=1, init_scale=0.3)
    system = ClothSystem(model, dt=DT, controller=controller, handle_mode="position", handle_scale=0.05)
    sim = diffsim.Simulation(system, STEPS, loss=loss_for(system))
    assert_gradcheck(sim, ["controller.weights", "controller.frequency", "initial.position"])


@pytest.mark.slow
def test_batch_copies_with_their_own_parameters():
    """Two copies with their own stretch modulus and initial velocity: the per-copy gradients are checked, and
    copy 1 run alone gives copy 1's loss."""
    system = free_cloth(batch=2, per_batch=("material.stretch_modulus", "initial.velocity"))
    system.params["material.stretch_modulus"].set(np.array([150.0, 120.0]))
    v = system.params["initial.velocity"].numpy()
    v[1] *= -0.5
    system.params["initial.velocity"].set(v)
    loss = diffsim.CenterOfMassLoss(direction=[1.0, 0.5, 0.2])
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    assert_gradcheck(sim, ["material.stretch_modulus", "initial.velocity", "air.wind"])
    sim.forward()
    per_copy = sim.loss_value.copy()
    assert per_copy[0] != per_copy[1]


@pytest.mark.slow
def test_checkpointed_gradients_equal_full():
    """K = 7 does not divide T = 40; the loss has terms in every segment."""
    system = free_cloth()
    loss = loss_for(system)
    full = diffsim.Simulation(system, STEPS, loss=loss)
    l_full, g_full = full.value_and_grad()
    ck = diffsim.Simulation(system, STEPS, loss=loss, storage="checkpointed", checkpoint_every=7)
    l_ck, g_ck = ck.value_and_grad()
    assert abs(l_ck - l_full) <= 1e-12 * abs(l_full)
    for name, g in g_full.items():
        np.testing.assert_allclose(
            g_ck[name], g, rtol=0, atol=1e-10 * max(np.abs(g).max(), 1e-30), err_msg=name
        )


def test_gradients_for_some_parameters_only_equal_those_of_all():
    """A system built with requires_grad gives its named parameters the same gradients as one built with every
    gradient (the others' adjoints are skipped, not the state's); the others have none, and say so."""
    names = ["initial.velocity", "material.*"]
    full = free_cloth()
    loss = loss_for(full)
    want = diffsim.Simulation(full, STEPS, loss=loss).value_and_grad()[1]
    some = free_cloth(requires_grad=names)
    value, got = diffsim.Simulation(some, STEPS, loss=loss).value_and_grad()
    fitted = [
        "initial.velocity",
        "material.stretch_modulus",
        "material.poisson_ratio",
        "material.bending_stiffness",
        "material.density",
    ]
    assert sorted(got) == sorted(fitted)
    for n in fitted:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-12, atol=0, err_msg=n)
        assert np.abs(got[n]).max() > 0, n
    with pytest.raises(
        diffsim.DiffsimError, match=r"damping.stretch: this parameter was built without a gradient"
    ):
        some.params["damping.stretch"].grad()
    with pytest.raises(diffsim.DiffsimError, match="air.drag: this parameter was built without a gradient"):
        diffsim.fit(diffsim.Simulation(some, STEPS, loss=loss), ["air.drag"], iters=1, progress=False)
    with pytest.raises(diffsim.DiffsimError, match=r"requires_grad: names no parameter: \['air.speed'\]"):
        diffsim.Simulation(free_cloth(requires_grad=["initial.velocity", "air.speed"]), STEPS)
    with pytest.raises(diffsim.DiffsimError, match=r"requires_grad: names no parameter: \['Air.drag'\]"):
        diffsim.Simulation(free_cloth(requires_grad=["Air.drag"]), STEPS)  # case matters, on every platform
    none = diffsim.Simulation(free_cloth(requires_grad=[]), STEPS, loss=loss)
    assert none.value_and_grad()[1] == {}
    with pytest.raises(diffsim.DiffsimError, match="gradcheck: no parameters to check"):
        diffsim.gradcheck(none)


def test_steps_launched_together_equal_steps_launched_one_by_one():
    """The forward pass runs the steps between loss frames as one launch (`multi_step_launcher`); one launch per
    step gives the same rollout, loss and gradients, with full and with checkpointed storage."""
    system = free_cloth()
    loss = loss_for(system)  # a term every 5 frames and one at the end
    for every in (None, 15):  # full storage, checkpoints every 15 steps
        together = diffsim.Simulation(system, STEPS, loss=loss, checkpoint_every=every)
        assert together._steps is not None and together.storage == (
            "full" if every is None else "checkpointed"
        )
        one_by_one = diffsim.Simulation(system, STEPS, loss=loss, checkpoint_every=every)
        one_by_one._steps = None
        v1, g1 = together.value_and_grad()
        x1 = together.trajectory()["x"]
        v2, g2 = one_by_one.value_and_grad()
        np.testing.assert_allclose(together.trajectory()["x"], x1)  # unchanged by the backward pass
        np.testing.assert_allclose(one_by_one.trajectory()["x"], x1, rtol=0, atol=1e-14)
        assert v1 == pytest.approx(v2, rel=1e-13)
        for name in g1:
            np.testing.assert_allclose(g1[name], g2[name], rtol=1e-10, atol=1e-14, err_msg=name)
