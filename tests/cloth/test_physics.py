"""The cloth integrator against closed-form physics and conservation laws (f64)."""

import numpy as np
import pytest

import diffsim
from diffsim.systems.cloth import ClothModel, ClothSystem
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


@pytest.mark.parametrize("material", ["corotated", "stvk"])
def test_strip_under_uniaxial_load_settles_at_the_strain_of_its_modulus(material):
    """A strip W = 0.1 m wide, L = 0.4 m long, pinned along its top edge, with a total force F = 0.5 N pulling its
    bottom edge (consistent nodal loads of a uniform traction) settles where the nominal stress F / W balances the
    membrane stress of a sheet of 2D modulus Y = 100 N/m under uniaxial tension:
        co-rotated:  F / W = Y eps,                     eps = lambda - 1          (Biot strain)
        StVK:        F / W = Y lambda (lambda^2 - 1) / 2                          (Green strain, nominal stress)
    and contracts sideways by -nu eps (co-rotated). The stretch is measured between two rows a quarter of the
    length away from either end, where the pins' hold on the contraction has died out (Saint-Venant)."""
    width, length, nx, ny = 0.1, 0.4, 5, 17
    modulus, nu, force = 100.0, 0.3, 0.5
    model = ClothModel.grid(
        size=(width, length),
        resolution=(nx, ny),
        stretch_modulus=modulus,
        poisson_ratio=nu,
        density=0.1,
        stretch_damping=0.02,
        mass_damping=60.0,
        bending_stiffness=1e-6,
    )
    model.pin(*[model.grid_index(i, ny - 1) for i in range(nx)])
    share = np.array([0.5] + [1.0] * (nx - 2) + [0.5]) / (nx - 1)
    model.loads = {model.grid_index(i, 0): (0.0, -force * share[i], 0.0) for i in range(nx)}
    system = ClothSystem(model, dt=2.5e-4, gravity=(0.0, 0.0, 0.0), material=material)
    sim = diffsim.Simulation(system, 2000)
    sim.run()
    x = sim.trajectory()["x"][:, 0]

    def row_y(pos, j):
        return pos[..., [model.grid_index(i, j) for i in range(nx)], 1].mean(axis=-1)

    stretch = (row_y(x, 12) - row_y(x, 4)) / (row_y(model.vertices, 12) - row_y(model.vertices, 4))
    assert np.ptp(stretch[-200:]) < 1e-6, "settled"
    lam = stretch[-1]
    nominal = force / width
    if material == "corotated":
        assert abs((lam - 1) - nominal / modulus) < 0.02 * nominal / modulus, (lam - 1, nominal / modulus)
        mid = model.grid_index(nx - 1, 8), model.grid_index(0, 8)
        lateral = (x[-1, mid[0], 0] - x[-1, mid[1], 0]) / width - 1
        assert abs(lateral + nu * (lam - 1)) < 0.02 * nu * (lam - 1), (lateral, -nu * (lam - 1))
    else:
        predicted = modulus * lam * (lam**2 - 1) / 2
        assert abs(predicted - nominal) < 0.02 * nominal, (predicted, nominal)


@pytest.mark.parametrize(
    "bending_model, bending_stiffness, steps",
    # the quadratic model with a 10x stiffer bending, so that bending matters; it takes longer to come to rest
    [("dihedral", 1e-4, 3000), ("quadratic", 1e-3, 4500)],
)
def test_hanging_cloth_comes_to_rest_and_its_energy_never_rises(bending_model, bending_stiffness, steps):
    """A 0.2 m square hanging from two corners, released horizontal, with stretch, bending and mass damping and
    nothing driving it: the total (kinetic + gravitational + membrane + bending) energy falls at every step until
    the cloth is at rest. Semi-implicit Euler's energy error oscillates; damping that is heavy enough in every mode
    (c_s / Y and c_b / k_b well above dt, c_m well above omega_pendulum^2 dt) keeps the decrease monotone."""
    model = ClothModel.grid(
        size=(0.2, 0.2),
        resolution=(5, 5),
        center=(0.0, 0.0, 1.0),
        stretch_modulus=50.0,
        density=0.2,
        bending_stiffness=bending_stiffness,
        stretch_damping=0.005,
        bending_damping=1e-6,
        mass_damping=5.0,
    )
    model.pin(0, 4)
    system = ClothSystem(model, dt=1e-3, bending_model=bending_model)
    sim = diffsim.Simulation(system, steps)
    sim.run()
    traj = sim.trajectory()
    energy = system.energy(traj)[:, 0]
    assert np.all(np.diff(energy) <= 1e-12 * abs(energy[0])), np.diff(energy).max()
    assert energy[0] - energy[-1] > 0.05 * abs(energy[0]), "it moved and lost energy"
    kinetic = 0.5 * np.einsum("i,id->", system.masses()[0], traj["v"][-1, 0] ** 2)
    assert kinetic < 1e-9 * abs(energy[0]), kinetic
    assert np.abs(traj["v"][-1, 0]).max() < 1e-3


def curved(resolution=(6, 5)):
    """A grid with a curved rest shape (non-zero rest bending angles)."""
    model = ClothModel.grid(
        size=(0.3, 0.2),
        resolution=resolution,
        stretch_modulus=80.0,
        density=0.2,
        bending_stiffness=1e-4,
        stretch_damping=0.002,
        bending_damping=1e-6,
    )
    v = model.vertices.copy()
    v[:, 2] = 0.05 * np.sin(8 * v[:, 0]) * np.cos(6 * v[:, 1])
    model.vertices = v
    return model


def test_pinned_cloth_at_rest_without_gravity_stays_still():
    """In its rest shape (curved: every hinge has a rest angle) and with no gravity, nothing moves: the membrane
    and bending forces vanish to rounding."""
    model = curved()
    model.pin(0, 5, 29)
    system = ClothSystem(model, dt=1e-3, gravity=(0.0, 0.0, 0.0))
    assert np.abs(system.arrays["rest_angle"]).max() > 0.1
    sim = diffsim.Simulation(system, 500)
    sim.run()
    traj = sim.trajectory()
    assert np.abs(traj["x"][:, 0] - model.vertices).max() < 1e-14
    assert np.abs(traj["v"]).max() < 1e-12


def test_free_cloth_conserves_momentum_and_angular_momentum():
    """No gravity, no air, no mass damping: the internal forces (membrane, bending, and their damping) sum to zero
    and exert no torque, so P = sum m v and L = sum m x x v stay constant. Semi-implicit Euler keeps L exactly:
    L' = sum m (x + dt v') x v' = sum m x x v' = L + dt sum x x f."""
    model = curved()
    model.velocities = np.random.default_rng(1).normal(size=model.vertices.shape) * 0.5
    system = ClothSystem(model, dt=1e-3, gravity=(0.0, 0.0, 0.0))
    sim = diffsim.Simulation(system, 1000)
    sim.run()
    traj = sim.trajectory()
    x, v = traj["x"][:, 0], traj["v"][:, 0]
    mass = system.masses()[0]
    p = np.einsum("i,fid->fd", mass, v)
    ang = np.einsum("i,fid->fd", mass, np.cross(x, v))
    assert np.abs(p - p[0]).max() < 1e-12 * np.abs(p[0]).max()
    assert np.abs(ang - ang[0]).max() < 1e-12 * np.abs(ang[0]).max()
    assert np.abs(v[-1] - v[0]).max() > 0.1, "the internal forces must actually exchange momentum"


def test_free_fall_is_exact():
    """A cloth in its rest shape falling freely: every vertex follows semi-implicit Euler's exact discrete
    parabola, x_n = x_0 + n v_0 dt + g dt^2 n (n + 1) / 2."""
    model = curved(resolution=(3, 3))
    v0 = np.array([0.3, -0.1, 2.0])
    model.velocities = np.broadcast_to(v0, model.vertices.shape).copy()
    g, dt, n = np.array([0.0, 0.0, -9.81]), 1e-3, 400
    system = ClothSystem(model, dt=dt, gravity=g)
    sim = diffsim.Simulation(system, n)
    sim.run()
    x = sim.trajectory()["x"][:, 0]
    k = np.arange(n + 1)[:, None, None]
    exact = model.vertices[None] + k * dt * v0 + g * dt**2 * k * (k + 1) / 2
    np.testing.assert_allclose(x, exact, rtol=0, atol=1e-12)


def test_cloth_rests_on_a_plane_at_the_penalty_depth():
    """A cloth lying on a plane collider sinks until the penalty pressure k_c pen carries its weight per area
    rho g: pen = rho g / k_c below the contact margin."""
    from diffsim.colliders import Collider

    rho, kc, margin = 0.2, 1e4, 0.005
    model = ClothModel.grid(
        size=(0.2, 0.2), resolution=(3, 3), center=(0.0, 0.0, margin), density=rho, stretch_modulus=50.0
    )
    system = ClothSystem(
        model,
        dt=1e-3,
        colliders=[Collider("plane", friction=0.5)],
        contact_stiffness=kc,
        contact_damping=50.0,
        contact_margin=margin,
    )
    sim = diffsim.Simulation(system, 1000)
    sim.run()
    z = sim.trajectory()["x"][-1, 0, :, 2]
    np.testing.assert_allclose(margin - z, rho * 9.81 / kc, rtol=1e-6)
