"""Reverse-mode gradients of the rigid-body system against central finite differences (f64), for every parameter
kind, with and without contact.

Tolerance: relative error 1e-6 (or an absolute error below ABS_FLOOR of the parameter's gradient scale, see there)
at the best of the finite-difference steps 1e-4 ... 1e-7 (relative to max(1,
|value|); `diffsim.gradcheck`). Stiff contacts make the rollout's higher derivatives large, so a central difference's
O(h^2) truncation error on a small gradient component is still ~1e-4 at h = 1e-5 and reaches 1e-8 only at h = 1e-7
(roundoff there is ~1e-9 in f64); the smallest inertia (0.001 kg m^2) also rules out h = 1e-3. The initial states
avoid exact kinks of the contact law (a body exactly touching the ground, a velocity exactly zero at a contact),
where a central difference converges only linearly."""

import numpy as np
import pytest

import diffsim
from diffsim.systems.rigid import RigidModel, RigidSystem
from tests.conftest import use
from tests.gradients import assert_gradcheck as _assert_gradcheck

DT = 2e-3
STEPS = 150


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


FD_STEPS = (1e-4, 1e-5, 1e-6, 1e-7)


#: a probe also passes when |ad - fd| <= ABS_FLOOR * (the largest |gradient| of that parameter): central
#: differences in f64 carry a roundoff error of about eps |loss| / h (1e-16 * 1 / 2e-5 = 5e-12 for a density of 200 at
#: the relative step 1e-7), which is 1e-8..1e-7 of the gradient's scale here; a component 100x smaller than its
#: parameter's largest one cannot be checked to 1e-6 of itself (measured: bodies.density, |g| = 3e-6 of a largest
#: 2.6e-4, agreed to 7e-12 absolute, 2.3e-6 relative).
ABS_FLOOR = 1e-7


#: the quick check of the non-slow tests: one random direction and one coordinate per parameter (the slow
#: `test_2d_every_parameter_thoroughly` runs the default two directions and four coordinates)
QUICK = {"directions": 1, "coordinates": 1}


def assert_gradcheck(sim, names, **kw):
    return _assert_gradcheck(sim, names, abs_floor=ABS_FLOOR, roundoff=True, steps=FD_STEPS, **kw)


def mechanism_2d(controller=None, batch=1, per_batch=()):
    """A base box on the ground, an arm on a limited hinge with a PD motor, an actuated spring between them, and a
    ball falling onto the arm: ground contact (corners, circle), body-body contact (circle-box), joint, limit,
    motor, spring."""
    m = RigidModel(dim=2, source="mechanism2d")
    m.add_body([0.0, 0.052], velocity=[0.3, 0.02], angular_velocity=0.1, name="base", density=200.0)
    m.add_box("base", [0.15, 0.05])
    m.add_body([0.25, 0.08], angle=0.1, angular_velocity=0.5, name="arm", density=150.0)
    m.add_box("arm", [0.1, 0.02])
    m.add_body([0.28, 0.2], velocity=[0.05, -0.5], name="ball", mass=0.3)
    m.add_circle("ball", 0.04)
    m.add_joint(
        "revolute",
        "base",
        "arm",
        anchor=[0.15, 0.08],
        stiffness=2e4,
        damping=5.0,
        lower=-0.2,
        upper=0.03,
        limit_stiffness=50.0,
        limit_damping=0.5,
        name="elbow",
    )
    m.add_motor("elbow", mode="position", scale=0.3, kp=20.0, kd=0.5)
    m.add_spring(
        "base",
        "arm",
        anchor_a=[0.0, 0.1],
        anchor_b=[0.3, 0.08],
        stiffness=300.0,
        damping=1.0,
        actuator=1,
        actuation=0.2,
    )
    if controller is None:
        controller = diffsim.OpenLoop(2, STEPS, init=0.4)
    return RigidSystem(
        m,
        dt=DT,
        ground=0.0,
        ground_friction=0.6,
        ground_restitution=0.5,
        ground_stiffness=2e4,
        contact_friction=0.3,
        contact_restitution=0.7,
        contact_stiffness=1e4,
        controller=controller,
        batch=batch,
        per_batch=per_batch,
    )


def loss_2d(system):
    rng = np.random.default_rng(0)
    x0 = system.params["initial.position"].numpy()
    target = x0[None] + 0.05 * rng.normal(size=(STEPS // 10, *x0.shape))
    return (
        diffsim.PointLoss(target, every=10)
        + 0.3 * diffsim.PointLoss(np.zeros((1, 3, 1)), frames=[STEPS], quantity="angle")
        + 0.5 * diffsim.CenterOfMassLoss(direction=(1.0, 0.0))
    )


@pytest.fixture(scope="module")
def sim_2d():
    system = mechanism_2d()
    return diffsim.Simulation(system, STEPS, loss=loss_2d(system))


def test_2d_set_up_has_every_contact(sim_2d):
    sim_2d.forward()
    x = sim_2d.trajectory()["x"][:, 0]
    assert np.linalg.norm(x[-1, 2] - x[0, 2]) > 0.05, "the ball must move"
    keys = sim_2d.system.contact_keys
    assert len(keys) >= 3  # box corners and circle on the ground, circle against boxes


def test_2d_bodies_and_shapes(sim_2d):
    assert_gradcheck(
        sim_2d,
        [
            "initial.position",
            "initial.velocity",
            "initial.angle",
            "initial.angular_velocity",
            "bodies.density",
            "bodies.mass",
            "shapes.size",
            "gravity",
        ],
        **QUICK,
    )


def test_2d_contact_parameters(sim_2d):
    assert_gradcheck(
        sim_2d,
        [
            "ground.height",
            "ground.friction",
            "ground.restitution",
            "ground.stiffness",
            "contact.friction",
            "contact.restitution",
            "contact.stiffness",
        ],
        **QUICK,
    )


def test_2d_joint_motor_spring_and_controls(sim_2d):
    assert_gradcheck(
        sim_2d,
        [
            "joints.stiffness",
            "joints.damping",
            "joints.anchor_a",
            "joints.anchor_b",
            "joints.lower",
            "joints.upper",
            "joints.limit_stiffness",
            "joints.limit_damping",
            "motors.scale",
            "motors.kp",
            "motors.kd",
            "springs.stiffness",
            "springs.damping",
            "springs.rest_length",
            "springs.actuation",
            "controller.actions",
        ],
        **QUICK,
    )


@pytest.mark.slow
def test_2d_every_parameter_thoroughly(sim_2d):
    assert_gradcheck(sim_2d, None)


def test_2d_limits_and_motor_are_active(sim_2d):
    """Set-up: the gradients above pass through the joint limit and the motor."""
    _, grads = sim_2d.value_and_grad(["joints.lower", "joints.upper", "motors.kp"])
    assert np.abs(grads["joints.lower"]).max() + np.abs(grads["joints.upper"]).max() > 0
    assert np.abs(grads["motors.kp"]).max() > 0


@pytest.mark.slow
def test_mlp_controller_weights():
    system = mechanism_2d(controller=diffsim.MLP(2, hidden=(6,), n_phases=1, frequency=2.0, init_scale=1.5))
    sim = diffsim.Simulation(system, STEPS, loss=loss_2d(system))
    assert_gradcheck(sim, ["controller.w0", "controller.b0", "controller.w1", "controller.b1"])


@pytest.mark.slow
def test_checkpointed_equals_full(sim_2d):
    system = sim_2d.system
    l_full, g_full = sim_2d.value_and_grad()
    ck = diffsim.Simulation(system, STEPS, loss=loss_2d(system), storage="checkpointed", checkpoint_every=17)
    l_ck, g_ck = ck.value_and_grad()
    assert abs(l_ck - l_full) <= 1e-12 * abs(l_full)
    for name, g in g_full.items():
        np.testing.assert_allclose(
            g_ck[name], g, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(g).max()), err_msg=name
        )


@pytest.mark.slow
def test_batch_copies_match_single_runs(sim_2d):
    """batch = 2 with per-copy initial velocities: each copy equals a batch-1 run with its value."""
    system = sim_2d.system
    v0 = system.params["initial.velocity"].numpy()
    velocities = [v0, v0 + np.array([[0.2, 0.0], [0.0, 0.1], [-0.1, 0.0]])]
    single = []
    for v in velocities:
        system.params["initial.velocity"].set(v)
        single.append(sim_2d.value_and_grad(["initial.velocity", "ground.friction"]))
    system.params["initial.velocity"].set(v0)
    batched = mechanism_2d(batch=2, per_batch=("initial.velocity",))
    batched.params["initial.velocity"].set(np.stack(velocities))
    sim = diffsim.Simulation(batched, STEPS, loss=loss_2d(batched))
    total, grads = sim.value_and_grad(["initial.velocity", "ground.friction"])
    assert total == pytest.approx(single[0][0] + single[1][0], rel=1e-12)
    for b in range(2):
        np.testing.assert_allclose(grads["initial.velocity"][b], single[b][1]["initial.velocity"], rtol=1e-10)
    assert grads["ground.friction"] == pytest.approx(
        single[0][1]["ground.friction"] + single[1][1]["ground.friction"], rel=1e-10
    )


def mechanism_3d():
    """A tilted box landing on the ground, a sphere on a hinge at its side driven by a torque motor, and a capsule
    hanging from the world on a ball joint and swinging into the ground."""
    m = RigidModel(dim=3, source="mechanism3d")
    m.add_body(
        [0.0, 0.0, 0.08],
        velocity=[0.4, 0.1, -0.2],
        orientation=[0.99, 0.05, 0.08, 0.02],
        name="box",
        density=300.0,
    )
    m.add_box("box", [0.12, 0.08, 0.05])
    m.add_body([0.0, 0.16, 0.1], angular_velocity=[0.0, 2.0, 0.0], name="wheel", density=200.0)
    m.add_sphere("wheel", 0.06)
    m.add_joint(
        "revolute",
        "box",
        "wheel",
        anchor=[0.0, 0.12, 0.1],
        axis=[0.0, 1.0, 0.0],
        stiffness=1e4,
        damping=5.0,
        angular_stiffness=5.0,
        angular_damping=0.02,
        name="axle",
    )
    m.add_motor("axle", mode="torque", scale=0.05)
    m.add_body(
        [0.5, 0.0, 0.12],
        orientation=[0.92, 0.0, 0.39, 0.0],
        name="cap",
        mass=0.4,
        inertia=[0.004, 0.004, 0.001],
    )
    m.add_capsule("cap", 0.03, 0.08)
    m.add_joint("ball", "world", "cap", anchor=[0.5, 0.0, 0.3], stiffness=5e3, damping=2.0)
    controller = diffsim.Periodic(1, frequency=3.0, harmonics=1, init_scale=0.8)
    # (the two orientations above are not unit quaternions: the model normalises them and warns, asserted here)
    # (stiffnesses inside `RigidSystem.stable_dt()`'s limit at dt = 2 ms: past it, shapes.size and the joint
    # anchors disagreed with central differences by 1e-5)
    with pytest.warns(UserWarning, match="quaternion .* normalised"):
        return RigidSystem(
            m,
            dt=DT,
            ground=0.0,
            ground_friction=0.5,
            ground_restitution=0.6,
            ground_stiffness=8e3,
            contact_stiffness=5e3,
            controller=controller,
        )


@pytest.mark.slow
def test_3d_gradients_with_contact_joints_and_controller():
    system = mechanism_3d()
    rng = np.random.default_rng(1)
    x0 = system.params["initial.position"].numpy()
    target = x0[None] + 0.03 * rng.normal(size=(STEPS // 10, *x0.shape))
    loss = diffsim.PointLoss(target, every=10) + 0.2 * diffsim.PointLoss(
        np.tile([[1.0, 0.0, 0.0, 0.0]], (1, 3, 1)), frames=[STEPS], quantity="q"
    )
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    sim.forward()
    z = sim.trajectory()["x"][:, 0, :, 2]
    assert z[:, 0].min() < 0.06, "set-up: the box must land"
    assert_gradcheck(
        sim,
        [
            "initial.position",
            "initial.velocity",
            "initial.orientation",
            "initial.angular_velocity",
            "bodies.density",
            "bodies.mass",
            "bodies.inertia",
            "shapes.size",
            "ground.friction",
            "ground.restitution",
            "ground.stiffness",
            "joints.stiffness",
            "joints.damping",
            "joints.angular_stiffness",
            "joints.angular_damping",
            "joints.anchor_a",
            "joints.anchor_b",
            "motors.scale",
            "controller.weights",
            "controller.frequency",
        ],
        coordinates=3,
    )


@pytest.mark.slow
def test_3d_free_flight_without_contact():
    """No contact: orientation, angular velocity and inertia gradients through the gyroscopic integrator."""
    m = RigidModel(dim=3)
    m.add_body(
        [0.0, 0.0, 1.0],
        velocity=[0.2, 0.0, 1.0],
        orientation=[0.9, 0.1, 0.3, 0.2],
        angular_velocity=[2.0, 5.0, -3.0],
        name="a",
        mass=1.5,
        inertia=[0.02, 0.03, 0.045],
    )
    m.add_body([1.0, 0.0, 1.0], angular_velocity=[0.0, 4.0, 1.0], name="b", density=700.0)
    m.add_box("b", [0.05, 0.1, 0.2], rotation=[0.0, 0.3, 0.0])
    m.add_capsule("b", 0.04, 0.1, offset=[0.1, 0.0, 0.0])
    with pytest.warns(UserWarning, match="quaternion .* normalised"):  # body a's orientation has norm 0.97
        system = RigidSystem(m, dt=DT, ground=None)
    loss = diffsim.PointLoss(
        np.tile([[0.0, 1.0, 0.0, 0.0]], (1, 2, 1)), frames=[STEPS], quantity="q"
    ) + diffsim.PointLoss(np.zeros((1, 2, 3)), frames=[STEPS // 2], quantity="w")
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    # (the density scales both bodies' inertia and changes no torque-free rotation: its gradient is 0)
    assert_gradcheck(
        sim, ["initial.orientation", "initial.angular_velocity", "bodies.inertia", "shapes.size"]
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("error::UserWarning")
def test_prismatic_fixed_joints_and_obstacles_2d():
    """A slider on a limited prismatic joint along x (position motor), a disc welded to it (fixed joint) that
    hits a static box, and a circle resting on the box. The set-up is inside `RigidSystem.stable_dt()`'s limit
    (warnings are errors here: the prismatic motor's gains act on the slider's mass, 1.5 kg, not on its inertia,
    which the check used to take and warned about a limit of 1.1 ms)."""
    m = RigidModel(dim=2)
    m.add_body([0.0, 0.3], name="slider", mass=1.0)
    m.add_box("slider", [0.05, 0.03])
    m.add_joint(
        "prismatic",
        "world",
        "slider",
        anchor=[0.0, 0.3],
        axis=[1.0, 0.0],
        stiffness=1e4,
        damping=5.0,
        angular_stiffness=50.0,
        angular_damping=0.5,
        lower=-0.05,
        upper=0.3,
        limit_stiffness=500.0,
        name="s",
    )
    m.add_motor("s", mode="position", scale=0.4, kp=30.0, kd=2.0)
    m.add_body([0.1, 0.3], name="disc", mass=0.5)
    m.add_circle("disc", 0.04)
    m.add_joint(
        "fixed",
        "slider",
        "disc",
        anchor=[0.05, 0.3],
        stiffness=1e4,
        damping=5.0,
        angular_stiffness=20.0,
        angular_damping=0.2,
    )
    m.add_body([0.3, 0.23], name="pebble", mass=0.2)
    m.add_circle("pebble", 0.03)
    m.add_obstacle([0.35, 0.1], [0.1, 0.1])
    system = RigidSystem(
        m,
        dt=DT,
        ground=None,
        contact_stiffness=5e3,
        contact_friction=0.4,
        controller=diffsim.OpenLoop(1, STEPS, init=0.8),
    )
    loss = diffsim.PointLoss(np.array([[[0.2, 0.3], [0.3, 0.3], [0.45, 0.25]]]), frames=[STEPS])
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    assert_gradcheck(
        sim,
        [
            "initial.position",
            "joints.stiffness",
            "joints.angular_stiffness",
            "joints.lower",
            "joints.upper",
            "motors.scale",
            "motors.kp",
            "obstacles.position",
            "obstacles.size",
            "contact.stiffness",
            "contact.friction",
            "controller.actions",
        ],
        coordinates=3,
    )
