"""Physical laws every simulator shares, checked against closed forms in f64 (issue 18).

Each test names its law; the equation sits beside its assertion. Per simulator there are two small set-ups, built
once per module (each new system compiles its own kernels):

- a *free* system: no ground, no walls, no damping by air or mass, internal forces only (springs; cloth membrane and
  bending; rigid joints, springs and body-body contact; an MPM elastic block). Gravity is a parameter, so the free
  fall test sets it to g and the momentum test to zero on the same compiled system;
- a *damped* system with contact and nothing driving it, for the energy law.

Smoke is Eulerian: it has no centre of mass falling and its walls exert forces, so its laws are the ones of an
incompressible fluid in a closed box (see the smoke tests below).

Gradients (reverse mode against central differences, f64, `tests.gradients.assert_gradcheck`) are not repeated
here: each simulator's own file already checks them in `make test` on a small set-up with contact (and controllers
where the system has them), for every parameter: tests/springs/test_gradients.py
(test_physical_parameters_with_ground_contact), tests/rigid/test_gradients.py (mechanism_2d: test_2d_*),
tests/cloth/test_gradients.py (test_every_parameter_of_a_free_cloth[corotated]), tests/mpm/test_gradients.py
(test_small_gradients_match_finite_differences) and tests/smoke/test_gradients.py
(test_every_parameter_semi_lagrangian). A gradcheck here would compile every system's adjoint a second time.
"""

import numpy as np
import pytest

import diffsim
from diffsim.colliders import Collider
from diffsim.systems.cloth import ClothModel, ClothSystem
from diffsim.systems.mpm import MPMModel, MPMSystem
from diffsim.systems.rigid import RigidModel, RigidSystem
from diffsim.systems.smoke import SmokeModel, SmokeSystem
from tests.conftest import use
from tests.smoke.cases import swirl

PARTICLE_SYSTEMS = ["springs", "rigid", "cloth", "mpm"]
G = 9.81


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


# --- free set-ups (no ground, no walls, no external damping) ------------------------------------------------


def free_springs():
    """Six masses, every pair joined by a damped spring, in 3D."""
    model = diffsim.SpringModel(dim=3)
    rng = np.random.default_rng(0)
    for _ in range(6):
        model.add_particle(
            rng.normal(size=3) * 0.2, velocity=rng.normal(size=3), mass=float(rng.uniform(0.1, 1.0))
        )
    for a in range(6):
        for b in range(a + 1, 6):
            model.add_spring(a, b, stiffness=float(rng.uniform(10, 100)), damping=float(rng.uniform(0, 1)))
    system = diffsim.SpringSystem(model, dt=1e-3, gravity=[0.0, 0.0, -G], ground=None)
    return system, lambda traj: np.broadcast_to(system.point_mass.numpy(), (system.n,))


def free_rigid():
    """2D: a base and an arm on a revolute joint with a spring between them, and a ball hitting the arm (joint,
    spring and body-body contact forces, all internal)."""
    m = RigidModel(dim=2, source="free_mechanism")
    m.add_body([0.0, 1.0], velocity=[0.3, 0.2], angular_velocity=0.5, name="base", density=200.0)
    m.add_box("base", [0.15, 0.05])
    m.add_body([0.25, 1.03], angle=0.1, angular_velocity=-2.0, name="arm", density=150.0)
    m.add_box("arm", [0.1, 0.02])
    m.add_body([0.28, 1.15], velocity=[0.05, -1.5], name="ball", mass=0.3)
    m.add_circle("ball", 0.04)
    m.add_joint("revolute", "base", "arm", anchor=[0.15, 1.03], stiffness=2e4, damping=5.0)
    m.add_spring("base", "arm", anchor_a=[0.0, 1.05], anchor_b=[0.3, 1.03], stiffness=300.0, damping=1.0)
    system = RigidSystem(
        m, dt=1e-3, gravity=[0.0, -G], ground=None, contact_restitution=0.7, contact_stiffness=1e4
    )
    return system, lambda traj: system.masses()[0]


def free_cloth():
    """A 4 x 4 sheet, perturbed out of its rest shape and spinning, with stretch and bending (and their damping);
    no air, no mass damping, no pins."""
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
        mass_damping=0.0,
    )
    rng = np.random.default_rng(3)
    model.positions = model.vertices + 0.01 * rng.normal(size=model.vertices.shape)
    model.velocities = rng.normal(size=model.vertices.shape) * 0.3
    system = ClothSystem(model, dt=1e-3, gravity=(0.0, 0.0, -G))
    return system, lambda traj: system.masses()[0]


def free_mpm():
    """An elastic block and a water disc colliding in mid-air, far from the grid's edges, no walls."""
    m = MPMModel(dim=2, res=32, dx=1 / 32, source="free_collision")
    m.add_material("rubber", "elastic", density=1000.0, youngs_modulus=2e4, poisson_ratio=0.3, viscosity=0.5)
    m.add_material("water", "fluid", density=800.0, bulk_modulus=2e4, viscosity=0.1)
    m.add_box([0.3, 0.45], [0.45, 0.6], "rubber", velocity=[1.0, 0.2])
    m.add_sphere([0.62, 0.55], 0.08, "water", velocity=[-0.8, 0.0])
    system = MPMSystem(m, dt=1e-3, walls="none", gravity=[0.0, -G])
    return system, lambda traj: system.masses()[0]


FREE = {"springs": free_springs, "rigid": free_rigid, "cloth": free_cloth, "mpm": free_mpm}
#: steps of the free rollouts: the bodies interact (collide, stretch, swing) and stay inside MPM's grid
FREE_STEPS = 150


@pytest.fixture(scope="module")
def free():
    """name -> (system, masses(traj) -> (n,) kg), each built on first use and shared by the tests."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = FREE[name]()
        return cache[name]

    return get


def rollout(system, steps, gravity):
    system.params["gravity"].set(np.asarray(gravity, dtype=np.float64))
    sim = diffsim.Simulation(system, steps)
    sim.forward()
    return sim.trajectory()


@pytest.mark.parametrize("name", PARTICLE_SYSTEMS)
def test_free_fall_centre_of_mass_follows_semi_implicit_euler_exactly(free, name):
    """Law: in uniform gravity the internal forces sum to zero, so the centre of mass X falls as one particle under
    the system's integrator. All four integrate v' = v + dt F / m, x' = x + dt v' (semi-implicit Euler; MPM's grid
    transfers conserve momentum, and x_p' = x_p + dt v_p'), whose exact discrete solution is
    V_n = V_0 + n dt g,  X_n = X_0 + n dt V_0 + g dt^2 n (n + 1) / 2."""
    system, masses = free(name)
    dim = system.dim
    g = np.zeros(dim)
    g[-1] = -G
    g[0] = 1.3  # a sideways component too
    n = FREE_STEPS
    traj = rollout(system, n, g)
    m = masses(traj)
    M = m.sum()
    X = np.einsum("i,fid->fd", m, traj["x"][:, 0]) / M
    V = np.einsum("i,fid->fd", m, traj["v"][:, 0]) / M
    k = np.arange(n + 1)[:, None]
    dt = system.dt
    # X_n = X_0 + n dt V_0 + g dt^2 n (n + 1) / 2
    X_exact = X[0] + k * dt * V[0] + g * dt**2 * k * (k + 1) / 2
    V_exact = V[0] + k * dt * g  # V_n = V_0 + n dt g
    scale_x = np.abs(X_exact).max()
    scale_v = np.abs(V_exact).max()
    assert np.abs(X - X_exact).max() <= 1e-12 * scale_x, np.abs(X - X_exact).max() / scale_x
    assert np.abs(V - V_exact).max() <= 1e-12 * scale_v, np.abs(V - V_exact).max() / scale_v
    # the set-up is not a rigid translation: the bodies deform or move relative to each other
    rel = traj["x"][:, 0] - X[:, None]
    assert np.abs(rel[-1] - rel[0]).max() > 1e-3


@pytest.mark.parametrize("name", PARTICLE_SYSTEMS)
def test_momentum_is_conserved_with_internal_forces_only(free, name):
    """Law: with no external force (no gravity, no ground, no walls) the internal forces are equal and opposite,
    so the total momentum P = sum_i m_i v_i is constant: P_n = P_0, to rounding."""
    system, masses = free(name)
    traj = rollout(system, FREE_STEPS, np.zeros(system.dim))
    m = masses(traj)
    v = traj["v"][:, 0]
    P = np.einsum("i,fid->fd", m, v)
    scale = np.einsum("i,id->", m, np.abs(v[0]))  # sum m |v|: P's size before cancellations
    assert np.abs(P - P[0]).max() <= 1e-12 * scale, np.abs(P - P[0]).max() / scale  # P_n = P_0
    assert np.abs(v[-1] - v[0]).max() > 0.05, "the internal forces must actually exchange momentum"


# --- energy: damped, with contact, nothing driving ----------------------------------------------------------


def damped_springs():
    """A damped 2D square bouncing on the ground (penalty contact with damping, friction) and sliding.
    Energy: kinetic + gravitational + springs (`energy()`) + the ground's penalty potential k_c pen^2 / 2."""
    model = diffsim.SpringModel(dim=2)
    pts = [[0.0, 0.1], [0.1, 0.1], [0.0, 0.2], [0.1, 0.22]]
    for k, p in enumerate(pts):
        model.add_particle(p, velocity=[0.5, -1.0 + 0.1 * k], mass=0.2 * (1 + 0.1 * k))
    for a, b in [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3), (1, 2)]:
        model.add_spring(a, b, stiffness=400.0, damping=2.0)
    kc = 1e4
    system = diffsim.SpringSystem(
        model, dt=5e-4, ground=0.0, friction=0.5, contact_stiffness=kc, contact_damping=20.0
    )

    def energy(traj):
        pen = np.maximum(0.0 - traj["x"][:, 0, :, -1], 0.0)
        return system.energy(traj)[:, 0] + 0.5 * kc * np.sum(pen**2, axis=-1), pen > 0

    return system, 1200, energy, True


def damped_rigid():
    """A spinning ball thrown onto the ground (restitution 0.5, friction 0.5): it bounces and rolls.
    Energy: kinetic (translation, rotation) + gravitational (`energy()`) + the contact's penalty potential
    k d^2 / 2, d = r - (y - ground)."""
    m = RigidModel(dim=2, source="bouncing_ball")
    r, k = 0.1, 1e4
    m.add_body([0.0, 0.3], velocity=[1.0, -1.0], angular_velocity=-20.0, name="ball", mass=1.0)
    m.add_circle("ball", r)
    system = RigidSystem(
        m, dt=5e-4, ground=0.0, ground_restitution=0.5, ground_friction=0.5, ground_stiffness=k
    )

    def energy(traj):
        d = np.maximum(r - traj["x"][:, 0, 0, 1], 0.0)
        return system.energy(traj)[:, 0] + 0.5 * k * d**2, d[:, None] > 0

    return system, 1500, energy, True


def damped_cloth():
    """A 5 x 5 sheet with stretch, bending and mass damping dropped onto a plane with friction.
    Energy: kinetic + gravitational + membrane + bending (`energy()`) + the plane's penalty potential
    k_c a_i pen_i^2 / 2 (a_i the vertex's area, pen_i = margin - (z_i - plane height))."""
    model = ClothModel.grid(
        size=(0.2, 0.2),
        resolution=(5, 5),
        center=(0.0, 0.0, 0.05),
        rotation=(0.3, 0.0, 0.0),
        velocity=(0.3, 0.0, -0.5),
        stretch_modulus=50.0,
        density=0.2,
        bending_stiffness=1e-4,
        stretch_damping=0.005,
        bending_damping=1e-6,
        mass_damping=5.0,
    )
    kc, margin = 1e5, 0.005
    system = ClothSystem(
        model,
        dt=1e-3,
        colliders=[Collider("plane", position=(0.0, 0.0, 0.0), friction=0.5)],
        contact_stiffness=kc,
        contact_damping=100.0,
        contact_margin=margin,
    )
    area = system.arrays["vertex_area"]

    def energy(traj):
        pen = np.maximum(margin - traj["x"][:, 0, :, 2], 0.0)
        return system.energy(traj)[:, 0] + 0.5 * kc * np.sum(area * pen**2, axis=-1), pen > 0

    return system, 1000, energy, True


def damped_mpm():
    """A viscoelastic block thrown onto the sticky floor of a 16^2 box: it lands, sags and bounces a little.
    Energy: kinetic, with APIC's affine part, + gravitational + neo-Hookean elastic:
    E = sum_p m_p (|v_p|^2 + tr(C_p D C_p^T)) / 2 - m_p g . x_p + V_p psi(F_p),  D = dx^2 / 4 I (quadratic
    B-splines, Jiang et al. 2015), psi = mu / 2 (tr(F^T F) - d) - mu log J + lambda / 2 (log J)^2 (the energy whose
    Kirchhoff stress the kernel uses, tau = mu (F F^T - I) + lambda log J I). `energy()` has the first and third
    terms only; without the affine and elastic ones the sum rises whenever the block rebounds. The sticky floor
    zeroes the grid velocity of the nodes it holds (its contact removes energy, it has no potential)."""
    res = 16
    dx = 1.0 / res
    young, nu = 2e3, 0.3
    m = MPMModel(dim=2, res=res, dx=dx, source="drop")
    m.add_material("rubber", "elastic", density=1000.0, youngs_modulus=young, poisson_ratio=nu, viscosity=5.0)
    m.add_box([0.3, 0.3], [0.5, 0.45], "rubber", velocity=[0.5, -1.0])
    system = MPMSystem(m, dt=1e-3, walls="sticky", gravity=[0.0, -G])
    mu, lam = young / (2 * (1 + nu)), young * nu / ((1 + nu) * (1 - 2 * nu))
    mass, volume = system.masses()[0], system.arrays["volume"]
    # the wall holds the nodes of index < bound; a particle's quadratic stencil starts at node floor(x / dx - 0.5)
    reach = (system.bound + 0.5) * dx

    def energy(traj):
        F = traj["F"][:, 0].reshape(traj["F"].shape[0], -1, 2, 2)
        C = traj["C"][:, 0].reshape(F.shape)
        J = np.linalg.det(F)
        psi = mu / 2 * (np.einsum("fpij,fpij->fp", F, F) - 2) - mu * np.log(J) + lam / 2 * np.log(J) ** 2
        affine = 0.5 * dx**2 / 4 * np.einsum("p,fpij,fpij->f", mass, C, C)
        touching = traj["x"][:, 0, :, 1] < reach
        return system.energy(traj)[:, 0] + affine + psi @ volume, touching

    return system, 600, energy, False


DAMPED = {"springs": damped_springs, "rigid": damped_rigid, "cloth": damped_cloth, "mpm": damped_mpm}


@pytest.mark.parametrize("name", list(DAMPED))
def test_energy_never_rises_without_driving(name):
    """Law: with damping, friction and contact but no controller or other driving, the total energy E (kinetic +
    gravitational + internal elastic + the contact's penalty potential k pen^2 / 2) never increases.

    In continuous time dE/dt = (f_n - k pen) v_n - (dampers, friction) <= 0: the penalty force
    f_n = max(0, k pen - c v_n) is its potential's force minus a damper, or zero while the contact opens faster than
    k pen / c. Semi-implicit Euler keeps this step by step (the damping is heavy enough in every mode, c / m above
    omega^2 dt, that its oscillating energy error does not show), except on a step that opens or closes a contact:
    the step that first penetrates by pen_1 adds k pen_1^2 / 2 of potential that no force did work for (the force
    is evaluated at the start of the step, when pen = 0), a discretisation error of order (omega dt)^2 E, not
    rounding. Those steps (penalty contact: springs, rigid, cloth) are left out of the step-to-step check; across
    each contact episode the energy after it is still checked against the energy before it (the out-of-contact
    frames' energies never increase)."""
    system, steps, energy, penalty = DAMPED[name]()
    sim = diffsim.Simulation(system, steps)
    sim.forward()
    e, touching = energy(sim.trajectory())  # E per frame; (frames, contact points) touching
    # MPM's walls act on grid velocities (no penalty potential): every step is checked
    same_contacts = np.all(touching[1:] == touching[:-1], axis=-1) if penalty else np.ones(steps, bool)
    rise = np.diff(e)[same_contacts]
    tol = 1e-12 * np.abs(e).max()
    assert rise.max() <= tol, (rise.max(), np.diff(e).argmax())  # E_{n+1} - E_n <= 0
    free_frames = e[~touching.any(axis=-1)]
    # E(after a contact episode) <= E(before it)
    assert np.diff(free_frames).max() <= tol, np.diff(free_frames).max()
    assert touching.any(), "the set-up must touch"
    assert same_contacts.sum() > 0.9 * steps, "contacts open or close on few steps: the check covers the rest"
    assert e[-1] < e[0] - 0.1 * abs(e[0]), (e[0], e[-1])  # it did lose energy


# --- smoke: an incompressible fluid in a closed box ---------------------------------------------------------
#
# Momentum is not conserved in a closed box (its walls push on the fluid), and neither advection scheme conserves a
# passive scalar's total (semi-Lagrangian back-traces are not area-preserving, MacCormack's clamp adds mass:
# tests/smoke/test_physics.py states the bounds), so those laws are left out for smoke. Its laws here:
# hydrostatic balance (the analogue of free fall), incompressibility and energy.

#: the pressure solve's stopping criterion: |div u| below this in every fluid cell (1/s)
SMOKE_TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def smoke():
    """A closed 16^2 unit box with a round obstacle, semi-Lagrangian advection, no viscosity, no buoyancy, no
    confinement; returns (system, swirl velocity: the initial MAC velocity of the energy test)."""
    m = SmokeModel((16, 16), boundary="closed")
    m.add_obstacle(center=(0.6, 0.4), radius=0.15)
    m.set_velocity(swirl(0.5))
    system = SmokeSystem(
        m,
        dt=0.02,
        advection="semi_lagrangian",
        tolerance=SMOKE_TOLERANCE,
        relative_tolerance=0.0,
        adjoint_tolerance=1e-12,
    )
    return system, system.v0.numpy().copy()


def smoke_rollout(system, steps, v0, gravity):
    system.v0.set(v0)
    system.gravity.set(np.asarray(gravity, dtype=np.float64))
    sim = diffsim.Simulation(system, steps)
    sim.forward()
    return sim.trajectory(["velocity"])


def test_smoke_uniform_gravity_in_a_closed_box_is_balanced_by_pressure(smoke):
    """Law (hydrostatics, smoke's free fall): a uniform body force g is a gradient, g = grad(g . x), so the
    projection removes it entirely, the pressure p = rho g . x balances it, and a fluid at rest stays at rest:
    u_n = 0. The solve stops at |div u| <= tol, so |u| <= tol L (L = 1 m, the box's side: the largest velocity a
    divergence of tol can build across the box with no flow through the walls)."""
    system, _ = smoke
    v = smoke_rollout(system, 5, np.zeros_like(system.v0.numpy()), (1.0, -G))["velocity"]
    length = 1.0
    assert np.abs(v).max() <= SMOKE_TOLERANCE * length, np.abs(v).max()  # u_n = 0
    # without the projection the fluid would have fallen: u* = n dt g after n steps
    assert 5 * system.dt * G > 1e6 * SMOKE_TOLERANCE * length


def test_smoke_velocity_stays_divergence_free_and_its_energy_never_rises(smoke):
    """Laws (incompressibility; dissipation): after every step the velocity is divergence-free, div u_n = 0 (to the
    solver's tolerance), with no flow through the walls; and with nothing driving the flow (no gravity, buoyancy,
    sources or control) its kinetic energy E = 1/2 sum_faces u^2 h^2 never increases: E_{n+1} <= E_n. The
    projection is an orthogonal projection in that norm (it removes a gradient, orthogonal to every
    divergence-free field), so it never adds energy; linear-interpolating advection replaces each value by a
    convex combination of its neighbours (numerical diffusion), which is not a proof of dissipation for every flow
    (its back-trace is not area-preserving) but is what this flow must show: a rise would be energy put in by a
    force, a wall or a wrong projection."""
    system, swirl_velocity = smoke
    traj = smoke_rollout(system, 30, swirl_velocity, (0.0, 0.0))
    v = traj["velocity"][:, 0]
    for f in range(1, v.shape[0]):
        assert np.abs(system.divergence(v[f])).max() <= SMOKE_TOLERANCE  # div u_n = 0
        assert np.abs(v[f][system.face_open_np == 0]).max() == 0.0  # u . n = 0 on walls and obstacles
    e = system.energy(traj)[:, 0]
    assert np.diff(e).max() <= 1e-12 * e[0], np.diff(e).max()  # E_{n+1} - E_n <= 0
    assert e[-1] < 0.9 * e[0], "the flow must move and lose energy"
