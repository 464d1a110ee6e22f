"""Rigid bodies against closed-form physics (f64). Each test names the law it checks, with the equation beside the
assertion."""

import math

import numpy as np
import pytest

import diffsim
from diffsim.systems.rigid import RigidModel, RigidSystem
from diffsim.systems.rigid.model import quaternion_matrix
from tests.conftest import use

G = 9.81


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def ball_2d(dt, restitution=0.8, stiffness=1e4, height=1.0, radius=0.1):
    m = RigidModel(dim=2)
    m.add_body([0.0, height + radius], name="ball", mass=1.0)
    m.add_circle("ball", radius)
    return RigidSystem(m, dt=dt, ground=0.0, ground_restitution=restitution, ground_stiffness=stiffness)


@pytest.mark.slow  # (compiles its own systems: kept out of the 60 s budget)
def test_free_fall_is_semi_implicit_euler_to_rounding():
    """x_n = x_0 + n dt v_0 + g dt^2 n (n + 1) / 2: symplectic Euler's exact discrete free fall (2D and 3D, the 3D
    body spinning; rotation does not disturb translation)."""
    dt, n = 1e-3, 300
    for dim in (2, 3):
        m = RigidModel(dim=dim)
        v0 = np.array([0.7, -0.2, 1.5][-dim:])
        x0 = np.array([0.1, 0.2, 3.0][-dim:])
        m.add_body(x0, velocity=v0, angular_velocity=2.0 if dim == 2 else [1.0, 2.0, 3.0], name="b", mass=2.0)
        m.add_box("b", [0.1, 0.2, 0.3][:dim])
        system = RigidSystem(m, dt=dt, ground=None)
        sim = diffsim.Simulation(system, n)
        sim.forward()
        x = sim.trajectory()["x"][:, 0, 0]
        g = np.zeros(dim)
        g[-1] = -G
        k = np.arange(n + 1)[:, None]
        expected = x0 + k * dt * v0 + g * dt**2 * k * (k + 1) / 2
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def ball():
    """One 1 kg ball of radius 0.1 m over the ground (k = 1e4 N/m: omega dt = 0.05 at dt = 5e-4 s, the contact is
    resolved in ~60 steps), shared by the bounce tests; they set its initial state, gravity and restitution."""
    return ball_2d(5e-4)


def test_bounce_rebounds_to_e_squared_h(ball):
    """A ball dropped from h with restitution e rebounds to e^2 h (within 2%; contact resolved: omega dt = 0.05)."""
    e, h, dt = 0.8, 1.0, 5e-4
    ball.params["ground.restitution"].set(e)
    ball.params["gravity"].set([0.0, -G])
    ball.params["initial.position"].set([[0.0, h + 0.1]])
    ball.params["initial.velocity"].set([[0.0, 0.0]])
    sim = diffsim.Simulation(ball, int(1.5 / dt))
    sim.forward()
    bottom = sim.trajectory()["x"][:, 0, 0, 1] - 0.1
    first_contact = int(np.argmax(bottom < 0))
    after = bottom[first_contact:]
    rebound = after[int(np.argmax(np.diff(after) > 0)) :].max()
    assert rebound == pytest.approx(e * e * h, rel=0.02)


def test_restitution_is_the_velocity_ratio(ball):
    """v_out = -e v_in for a ball hitting the ground at 4.4 m/s without gravity (within 1%: the damping ratio of
    `geometry.damping_ratio` is exact for the clamped spring-dashpot; the 1% is the time discretisation at
    omega dt = 0.05)."""
    dt = 5e-4
    ball.params["gravity"].set([0.0, 0.0])
    for e in (0.5, 0.9):
        ball.params["ground.restitution"].set(e)
        ball.params["initial.position"].set([[0.0, 0.2]])
        ball.params["initial.velocity"].set([[0.0, -4.4]])
        sim = diffsim.Simulation(ball, int(0.1 / dt))
        sim.forward()
        v = sim.trajectory()["v"][-1, 0, 0, 1]
        assert v == pytest.approx(4.4 * e, rel=0.01)


def test_box_slides_to_rest_after_v2_over_2_mu_g():
    """A box sliding at v on a plane with friction mu stops after d = v^2 / (2 mu g) (within 2%). The smoothed
    friction decelerates by mu g v / (v + A), A = 2 mu g dt n_g m inv_t (docs/rigid.md), which lengthens the
    distance by about 2 A / v: 4% at dt = 1 ms, 1% at the dt = 0.25 ms used here."""
    v, mu, dt = 2.0, 0.5, 2.5e-4
    m = RigidModel(dim=2)
    m.add_body([0.0, 0.1], velocity=[v, 0.0], name="box", mass=1.0)
    m.add_box("box", [0.1, 0.1])
    system = RigidSystem(m, dt=dt, ground=0.0, ground_friction=mu, ground_stiffness=1e5)
    sim = diffsim.Simulation(system, int(1.0 / dt))
    sim.forward()
    traj = sim.trajectory()
    x = traj["x"][:, 0, 0, 0]
    assert abs(traj["v"][-1, 0, 0, 0]) < 1e-3
    assert x[-1] - x[0] == pytest.approx(v * v / (2 * mu * G), rel=0.02)


ROD = 1.0  # length (m), 1 kg, hinged at its top end


def pendulum(theta0, stiffness=1e5):
    m = RigidModel(dim=2)
    centre = 0.5 * ROD * np.array([math.sin(theta0), -math.cos(theta0)])
    m.add_body(centre, angle=theta0, name="rod", mass=1.0)
    m.add_box("rod", [0.01, 0.5 * ROD])
    m.add_joint("revolute", "world", "rod", anchor=[0.0, 0.0], stiffness=stiffness, damping=20.0)
    return RigidSystem(m, dt=1e-3, ground=None)


def pivot_inertia():
    """I about the hinge: m (w^2 + L^2) / 12 + m (L / 2)^2 for a rod of width w = 0.02."""
    return (0.02**2 + ROD**2) / 12 + (0.5 * ROD) ** 2


@pytest.fixture(scope="module")
def rod():
    return pendulum(0.05)


def release(system, theta0):
    system.params["initial.position"].set([0.5 * ROD * np.array([math.sin(theta0), -math.cos(theta0)])])
    system.params["initial.angle"].set([theta0])


def test_pendulum_small_angle_period(rod):
    """A rod on a hinge swings with T = 2 pi sqrt(I_pivot / (m g d)), d = L / 2 (for a point mass at L:
    2 pi sqrt(L / g)), within 0.5% at 0.05 rad."""
    system = rod
    release(system, 0.05)
    sim = diffsim.Simulation(system, 5000)
    sim.forward()
    x = sim.trajectory()["x"][:, 0, 0, 0]
    up = np.nonzero((x[:-1] < 0) & (x[1:] >= 0))[0]
    crossings = up + x[up] / (x[up] - x[up + 1])  # linear interpolation between frames
    period = np.diff(crossings).mean() * 1e-3
    expected = 2 * math.pi * math.sqrt(pivot_inertia() / (G * 0.5 * ROD))
    assert len(crossings) >= 2
    assert period == pytest.approx(expected, rel=0.005)


def test_joint_anchor_drift_is_force_over_stiffness(rod):
    """The penalty joint's anchors drift by |F| / k, F the force the joint carries. Released at theta0, the rod's
    joint carries most at the bottom: F = m g + m w^2 d with w^2 = 2 m g d (1 - cos theta0) / I_pivot (a point
    mass: m g (3 - 2 cos theta0)); the drift stays within 5% of F / k."""
    theta0, k = 1.0, 1e5
    system = rod
    release(system, theta0)
    assert float(system.params["joints.stiffness"].numpy()[0]) == k
    sim = diffsim.Simulation(system, 3000)
    sim.forward()
    traj = sim.trajectory()
    anchor = system.params["joints.anchor_b"].numpy()[0]
    angle = traj["angle"][:, 0, 0]
    rot = np.stack(
        [np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2
    )
    world = traj["x"][:, 0, 0] + rot @ anchor
    drift = np.linalg.norm(world, axis=1).max()
    d = 0.5 * ROD
    force = G + 2 * G * d * (1 - math.cos(theta0)) / pivot_inertia() * d
    assert drift == pytest.approx(force / k, rel=0.05)


@pytest.fixture(scope="module")
def spinning_box():
    m = RigidModel(dim=3)
    m.add_body([0.0, 0.0, 0.0], name="box", mass=2.0)
    m.add_box("box", [0.3, 0.2, 0.1])  # I_x < I_y < I_z
    return RigidSystem(m, dt=1e-3, gravity=[0.0, 0.0, 0.0], ground=None)


def test_torque_free_body_conserves_angular_momentum_and_energy(spinning_box):
    """Torque free: L = R I R^T w is constant (relative 1e-10 over 1000 steps: the integrator updates L, so the
    gyroscopic term w x I w is exact) and E = w . L / 2 is conserved (relative 1e-4 at |w| dt = 0.01)."""
    system = spinning_box
    sim = diffsim.Simulation(system, 1000)
    system.params["initial.angular_velocity"].set([[3.0, 6.0, 8.0]])
    sim.forward()
    traj = sim.trajectory()
    L = system.angular_momentum(traj)[:, 0]
    E = system.energy(traj)[:, 0]
    assert np.abs(L - L[0]).max() <= 1e-10 * np.linalg.norm(L[0])
    assert np.abs(E - E[0]).max() <= 1e-4 * E[0]
    assert np.abs(np.linalg.norm(traj["q"][:, 0, 0], axis=1) - 1).max() < 1e-12


@pytest.mark.slow  # (compiles its own systems: kept out of the 60 s budget)
def test_rotation_about_the_intermediate_axis_is_unstable(spinning_box):
    """Euler's equations: spin about the axes of least and greatest inertia is stable, about the intermediate axis
    a small perturbation grows like exp(w sqrt((I2 - I1)(I3 - I2) / (I1 I3)) t) and the body tumbles."""
    system = spinning_box
    sim = diffsim.Simulation(system, 3000)
    for axis, stable in ((0, True), (1, False), (2, True)):
        w0 = np.full(3, 0.05)
        w0[axis] = 10.0
        system.params["initial.angular_velocity"].set([w0])
        sim.forward()
        traj = sim.trajectory()
        body_w = np.einsum(
            "fji,fj->fi", np.array([quaternion_matrix(q) for q in traj["q"][:, 0, 0]]), traj["w"][:, 0, 0]
        )
        along = body_w[:, axis] / 10.0
        if stable:
            assert along.min() > 0.99, axis
        else:
            assert along.min() < -0.5, axis  # flipped over


@pytest.mark.slow  # (compiles its own systems: kept out of the 60 s budget)
def test_free_collision_conserves_momentum():
    """Two spheres collide off-centre, with friction and no gravity: total linear momentum sum m v and angular
    momentum sum (m x x v + I w) are conserved to rounding (forces are equal and opposite at one point); with
    e = 1 and no friction the kinetic energy is conserved within 1%."""
    m = RigidModel(dim=3)
    m.add_body([0.0, 0.0, 0.0], velocity=[1.0, 0.0, 0.0], name="a", mass=1.0)
    m.add_sphere("a", 0.1)
    m.add_body(
        [0.5, 0.08, 0.0], velocity=[-0.5, 0.0, 0.1], angular_velocity=[0.0, 0.0, 3.0], name="b", mass=3.0
    )
    m.add_sphere("b", 0.15)
    system = RigidSystem(m, dt=5e-4, gravity=[0.0, 0.0, 0.0], ground=None, contact_stiffness=1e4)
    for friction, restitution in ((0.4, 0.7), (0.0, 1.0)):
        system.params["contact.friction"].set(friction)
        system.params["contact.restitution"].set(restitution)
        sim = diffsim.Simulation(system, 1000)
        sim.forward()
        traj = sim.trajectory()
        p = np.einsum("b,fbd->fd", system.masses()[0], traj["v"][:, 0])
        L = system.angular_momentum(traj)[:, 0]
        assert np.linalg.norm(traj["v"][-1, 0, 0] - traj["v"][0, 0, 0]) > 0.5, "set-up: they must collide"
        np.testing.assert_allclose(p, np.broadcast_to(p[0], p.shape), atol=1e-12)
        np.testing.assert_allclose(L, np.broadcast_to(L[0], L.shape), atol=1e-12)
        if friction == 0.0:
            E = system.energy(traj)[:, 0]
            assert E[-1] == pytest.approx(E[0], rel=0.01)


def test_mass_and_inertia_from_shapes():
    """Solid sphere m = rho 4/3 pi r^3, I = 2/5 m r^2; box I_x = m (b^2 + c^2) / 3 (half extents); a body of two
    spheres gets the parallel-axis terms m d^2 and its position moves to the centre of mass."""
    m = RigidModel(dim=3)
    m.add_body([0.0, 0.0, 1.0], name="s", density=500.0)
    m.add_sphere("s", 0.2)
    m.add_body([1.0, 0.0, 1.0], name="box", density=800.0)
    m.add_box("box", [0.1, 0.2, 0.3])
    m.add_body([2.0, 0.0, 1.0], name="pair", density=1000.0)
    m.add_sphere("pair", 0.1, offset=[0.0, 0.0, 0.0])
    m.add_sphere("pair", 0.1, offset=[0.4, 0.0, 0.0])
    system = RigidSystem(m, dt=1e-3, ground=None)
    system.mass_properties()
    mass, inertia = system.masses()[0], system.inertias()[0]
    ms = 500 * 4 / 3 * math.pi * 0.2**3
    assert mass[0] == pytest.approx(ms, rel=1e-12)
    np.testing.assert_allclose(inertia[0], np.eye(3) * 0.4 * ms * 0.04, rtol=1e-12)
    mb = 800 * 0.2 * 0.4 * 0.6
    np.testing.assert_allclose(
        np.diag(inertia[1]), mb / 3 * np.array([0.04 + 0.09, 0.01 + 0.09, 0.01 + 0.04]), rtol=1e-12
    )
    mp = 1000 * 4 / 3 * math.pi * 0.1**3
    assert mass[2] == pytest.approx(2 * mp, rel=1e-12)
    # spheres at +-0.2 from the centre of mass along x
    np.testing.assert_allclose(
        np.diag(inertia[2]),
        [2 * 0.4 * mp * 0.01, 2 * (0.4 * mp * 0.01 + mp * 0.04), 2 * (0.4 * mp * 0.01 + mp * 0.04)],
        rtol=1e-12,
    )
    np.testing.assert_allclose(system.params["initial.position"].numpy()[2], [2.2, 0.0, 1.0])
