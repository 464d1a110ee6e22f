"""The quadratic bending model (Bergou et al. 2006, ``bending_model="quadratic"``): it agrees with the dihedral
energy for small isometric bends, leaves a flat cloth at rest, dissipates with damping, has correct gradients
(f64, central finite differences), and refuses what it cannot model."""

import numpy as np
import pytest

import diffsim
from diffsim import DiffsimError
from diffsim.scene import Scene
from diffsim.systems.cloth import ClothModel, ClothSystem
from tests.cloth.test_gradients import STEPS, assert_gradcheck, free_cloth, loss_for
from tests.conftest import use

#: a hinge (p, q, a, b): edge p-q on the x axis, a above it and b below it, both off-centre (unequal cotangents)
HINGE_VERTICES = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [0.65, -0.55, 0.0]])
HINGE_FACES = np.array([[0, 1, 2], [1, 0, 3]])


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def _rotate_x(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return points @ r.T


def _hinge_system(bending_model):
    model = ClothModel(
        vertices=HINGE_VERTICES.copy(),
        faces=HINGE_FACES.copy(),
        stretch_modulus=100.0,
        density=0.2,
        bending_stiffness=0.01,
    )
    return ClothSystem(model, dt=1e-4, gravity=(0.0, 0.0, 0.0), bending_model=bending_model, check_dt=False)


def test_small_isometric_bend_matches_the_dihedral_energy():
    """Rotate the wing b about the shared edge by theta (an isometry: no membrane energy): the quadratic energy is
    exactly k_b w 4 sin^2(theta / 2) / 2, so its ratio to the dihedral k_b w theta^2 / 2 is 1 - theta^2 / 12 +
    O(theta^4). Checked: |relative difference - theta^2 / 12| < 0.01 theta^2 at 0.1, 0.01 and 1e-3 rad (measured
    differences 8.3e-4, 8.3e-6, 8.3e-8). A rigid motion of the bent hinge changes neither energy."""
    dihedral, quadratic = _hinge_system("dihedral"), _hinge_system("quadratic")
    rng = np.random.default_rng(0)
    for theta in (0.1, 0.01, 1e-3):
        x = HINGE_VERTICES.copy()
        x[3] = _rotate_x(x[3:4], theta)[0]
        # the same bend, moved rigidly: rotated about a random axis and translated
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(0.7) * k + (1 - np.cos(0.7)) * k @ k
        moved = x @ rot.T + rng.normal(size=3)
        traj = {"x": np.stack([x, moved])[:, None], "v": np.zeros((2, 1, 4, 3))}
        e_d = dihedral.energy(traj)[:, 0]
        e_q = quadratic.energy(traj)[:, 0]
        exact = 0.5 * 0.01 * dihedral.arrays["hinge_weight"][0] * theta**2
        # the dihedral model's energy (its polynomial arctangent is accurate to ~2e-8 relative near 0; the
        # membrane energy of the isometry is ~0)
        assert np.all(np.abs(e_d / exact - 1.0) < 1e-7), e_d / exact - 1.0
        rel = 1.0 - e_q / exact
        assert np.all(np.abs(rel - theta**2 / 12) < 0.01 * theta**2), (theta, rel)
        assert e_q[1] == pytest.approx(e_q[0], rel=1e-9), "rigid motions cost nothing"


def test_kernel_forces_are_minus_the_energy_gradient():
    """One step from a bent hinge with zero velocity: the velocity change times the masses is dt times the force,
    which must be minus the gradient of `energy()` (central differences)."""
    system = _hinge_system("quadratic")
    x = HINGE_VERTICES.copy()
    x[3] = _rotate_x(x[3:4], 0.3)[0]
    x[2] = _rotate_x(x[2:3], -0.2)[0]
    system.x0.set(x)
    sim = diffsim.Simulation(system, 1)
    sim.run()
    force = system.masses()[0][:, None] * sim.trajectory()["v"][1, 0] / system.dt
    grad = np.zeros_like(x)
    h = 1e-6
    for i in range(4):
        for d in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, d] += h
            xm[i, d] -= h
            e = system.energy({"x": np.stack([xp, xm])[:, None], "v": np.zeros((2, 1, 4, 3))})[:, 0]
            grad[i, d] = (e[0] - e[1]) / (2 * h)
    assert np.abs(force + grad).max() < 1e-6 * np.abs(grad).max(), (force, -grad)


def test_flat_cloth_at_rest_stays_still():
    """A flat cloth in its rest shape, tilted (so that the bending weights see a rotated plane), pinned, without
    gravity: the quadratic bending forces vanish to rounding and nothing moves."""
    model = ClothModel.grid(
        size=(0.3, 0.2),
        resolution=(6, 5),
        rotation=(0.5, -0.3, 0.2),
        stretch_modulus=80.0,
        density=0.2,
        bending_stiffness=1e-3,
        stretch_damping=0.002,
        bending_damping=1e-6,
    )
    model.pin(0, 5, 29)
    system = ClothSystem(model, dt=1e-3, gravity=(0.0, 0.0, 0.0), bending_model="quadratic")
    sim = diffsim.Simulation(system, 500)
    sim.run()
    traj = sim.trajectory()
    assert np.abs(traj["x"][:, 0] - system.arrays["x_rest"]).max() < 1e-14
    assert np.abs(traj["v"]).max() < 1e-12


def test_gradients_with_quadratic_bending():
    """Reverse mode against central finite differences (f64) for the bending constants and the initial state, on
    the tumbling 4 x 4 cloth of test_gradients (wind, a load, a pinned corner)."""
    system = free_cloth(bending_model="quadratic")
    assert system.quadratic
    sim = diffsim.Simulation(system, STEPS, loss=loss_for(system))
    assert_gradcheck(
        sim, ["material.bending_stiffness", "damping.bending", "initial.position", "initial.velocity"]
    )


def _scene(material):
    data = {
        "scene": {"name": "t", "system": "cloth"},
        "sim": {"dt": 1e-3, "steps": 5},
        "cloth": {"resolution": [3, 3]},
        "material": material,
    }
    return Scene.from_dict(data, "t.toml")


def test_bending_model_errors():
    with pytest.raises(DiffsimError, match=r"t\.toml: material\.bending_model: .*'dihedral'.*got 'cubic'"):
        _scene({"bending_model": "cubic"}).build_system()
    assert _scene({"bending_model": "quadratic"}).build_system().quadratic
    assert not _scene({}).build_system().quadratic
    model = ClothModel(vertices=HINGE_VERTICES.copy(), faces=HINGE_FACES.copy(), stretch_modulus=10.0)
    with pytest.raises(DiffsimError, match=r"cloth: bending_model: unknown bending model 'cubic'"):
        ClothSystem(model, dt=1e-3, bending_model="cubic")
    # a curved rest shape: the quadratic model is refused, naming the hinge and its angle
    bent = HINGE_VERTICES.copy()
    bent[3] = _rotate_x(bent[3:4], 0.2)[0]
    model = ClothModel(vertices=bent, faces=HINGE_FACES.copy(), stretch_modulus=10.0)
    with pytest.raises(
        DiffsimError, match=r"cloth: bending_model: .*needs a flat rest shape.*hinge 0.*0\.2 rad"
    ):
        ClothSystem(model, dt=1e-3, bending_model="quadratic")
    ClothSystem(model, dt=1e-3)  # the dihedral model takes it
