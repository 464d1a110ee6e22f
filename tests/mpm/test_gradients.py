"""Reverse-mode gradients of the MPM system against central finite differences (f64), for every parameter kind,
through the custom per-step adjoint (grid recomputed, never stored), with full and checkpointed storage.

The fast checks use one small set-up (`small`: an actuated, viscous jelly block thrown onto a friction floor, 32^2
grid, 324 particles, 20 steps). The mixed set-up with all three material kinds, colliders, batch copies and 3D
compiles a much larger adjoint (minutes on the shared 2-core machine): those are slow tests.

Tolerance: 1e-6 relative (gradcheck keeps the best of four step sizes 1e-3..1e-6). In f64 the finite difference of a
smooth rollout agrees to ~1e-8..1e-10; through Coulomb friction (smoothed at 1e-6 m/s) and wall contact the best step
size still agrees to better than 1e-6, while a wrong adjoint (a missing term, a wrong loop order) is off by O(1).
"""

import numpy as np
import pytest

import diffsim
from diffsim.systems.mpm import MPMSystem
from tests.conftest import use
from tests.gradients import assert_gradcheck
from tests.mpm.bodies import colliders, mixed_model

STEPS = 30
# Coulomb-friction walls keep the loss continuous (a sticky wall frees a node the moment it leaves, a jump in its
# velocity that finite differences cannot straddle); the ceiling is sticky, and nothing reaches it.
WALLS = ["friction", "slip", "friction", "sticky"]


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def target_loss(system, steps, every=5, seed=0):
    """Trajectory loss against a perturbed copy of the initial positions, plus a centre-of-mass term."""
    rng = np.random.default_rng(seed)
    x = system.x0.numpy()
    target = x[None] + rng.normal(0.0, 0.01, size=(steps // every,) + x.shape)
    up = [0.3] + [0.2] * (system.dim - 2) + [1.0]
    return diffsim.PointLoss(target, every=every) + diffsim.CenterOfMassLoss(direction=up)


def small_model():
    """An actuated, viscous jelly block (two actuators) thrown down and sideways onto the floor: 32^2 grid, ppc 9,
    324 particles. One material kind keeps the adjoint quick to compile; fluids are checked in the slow tests."""
    from diffsim.systems.mpm import MPMModel

    m = MPMModel(dim=2, res=32, dx=1 / 32, ppc=9, source="small")
    m.add_material("jelly", "elastic", density=1000.0, youngs_modulus=3e3, poisson_ratio=0.3, viscosity=0.3)
    m.add_box([0.2, 0.105], [0.5, 0.23], "jelly", velocity=[0.7, -1.2], actuator=0)
    m.actuator_ids[0][: m.n_particles // 2] = 1
    return m


SMALL_STEPS = 20


@pytest.fixture(scope="module")
def small():
    controller = diffsim.Periodic(2, frequency=6.0, harmonics=1, init_scale=0.3, seed=2)
    system = MPMSystem(
        small_model(),
        dt=2e-3,
        walls=WALLS,
        wall_friction=0.4,
        controller=controller,
        actuation_strength=400.0,
    )
    return diffsim.Simulation(system, SMALL_STEPS, loss=target_loss(system, SMALL_STEPS, every=4))


def test_small_setup_touches_the_floor_and_every_parameter_matters(small):
    """Gradchecks only mean something if each parameter's gradient is nonzero (the block must reach the friction
    floor within the rollout, the actuators must act)."""
    assert 200 <= small.system.n <= 500
    small.forward()
    small.backward()
    y = small.trajectory()["x"][:, 0, :, 1]
    floor = small.system.bound * small.system.dx
    assert y[-1].min() < floor + 0.5 * small.system.dx, "test set-up: the block must reach the floor band"
    for p in small.system.params:
        assert np.abs(p.grad()).max() > 0, f"{p.name} has no gradient in this set-up"


@pytest.mark.parametrize(
    "group",
    [
        ["materials.jelly.youngs_modulus", "materials.jelly.poisson_ratio", "materials.jelly.viscosity"],
        ["walls.friction"],
        ["initial.velocity", "bodies.velocity"],  # initial.position: the slow mixed check
        ["actuation.strength", "controller.weights"],
    ],
    ids=["elastic", "friction", "initial-state", "actuation"],
)
def test_small_gradients_match_finite_differences(small, group):
    assert_gradcheck(small, group)


def test_memory_grows_with_particles_not_with_grid_or_steps():
    """The grid is one (batch, *res) buffer reused by every step and recomputed in each step's adjoint: the
    simulation's buffers (Simulation.memory_bytes) hold particles x stored frames, and do not change with the grid
    resolution; with checkpointing they do not grow with the number of steps either (K + 1 frames + snapshots)."""

    def sim_for(res, steps, storage="full", k=None):
        from diffsim.systems.mpm import MPMModel

        m = MPMModel(dim=2, res=res, dx=1 / 32, source="memory")
        m.add_material("jelly", "elastic", youngs_modulus=3e3)
        m.add_box([0.3, 0.3], [0.5, 0.5], "jelly")
        system = MPMSystem(m, dt=2e-3)
        return diffsim.Simulation(system, steps, storage=storage, checkpoint_every=k)

    a = sim_for(32, 10)
    n = a.system.n
    per_frame = a.memory_bytes()["window"] / 11
    # x, v (2 each), C, F (4 each) and the scratch p_affine (4: P2G's affine matrix, kept for the adjoint's grid
    # recompute) per particle, value + gradient, 8 bytes (f64): 16 x 2 x 8 = 256 B
    assert per_frame == 2 * 8 * 16 * n
    assert sim_for(96, 10).memory_bytes() == a.memory_bytes()  # 9x the grid nodes: the same

    def again(steps, storage="full", k=None):  # other rollout lengths of the same system
        return diffsim.Simulation(a.system, steps, storage=storage, checkpoint_every=k)

    assert again(40).memory_bytes()["window"] == 41 * per_frame  # full storage: frames x particles
    c1, c2 = again(400, "checkpointed", 20), again(4000, "checkpointed", 20)
    assert c1.memory_bytes()["window"] == c2.memory_bytes()["window"] == 21 * per_frame
    # snapshots: one state (x, v, C, F, no gradient) per segment, 12 x 8 bytes per particle
    assert c2.memory_bytes()["snapshots"] - c1.memory_bytes()["snapshots"] == (200 - 20) * 12 * 8 * n
    # the grid is held once, by the system, whatever the number of steps
    assert a.system.grid_bytes() == 32 * 32 * (1 + 2 + 2) * 2 * 8


def build(storage="full", k=None, batch=1, per_batch=()):
    model = mixed_model(dim=2)
    controller = diffsim.Periodic(1, frequency=4.0, harmonics=1, init_scale=0.3, seed=1)
    system = MPMSystem(
        model,
        dt=2e-3,
        walls=WALLS,
        wall_friction=0.4,
        colliders=colliders(2),
        controller=controller,
        actuation_strength=500.0,
        batch=batch,
        per_batch=per_batch,
    )
    return diffsim.Simulation(
        system, STEPS, loss=target_loss(system, STEPS), storage=storage, checkpoint_every=k
    )


@pytest.fixture(scope="module")
def mixed():
    return build()


@pytest.mark.slow
def test_setup_exercises_every_mechanism(mixed):
    """The checks below mean something only if the bodies hit the floor, the colliders and each other, and the
    sand yields: every parameter must have a nonzero gradient."""
    mixed.forward()
    mixed.backward()
    for p in mixed.system.params:
        assert np.abs(p.grad()).max() > 0, f"{p.name} has no gradient in this set-up"


@pytest.mark.slow
@pytest.mark.parametrize(
    "group",
    [
        [
            "materials.jelly.density",
            "materials.jelly.youngs_modulus",
            "materials.jelly.poisson_ratio",
            "materials.jelly.viscosity",
        ],
        ["materials.water.density", "materials.water.bulk_modulus", "materials.water.viscosity"],
        [
            "materials.sand.density",
            "materials.sand.youngs_modulus",
            "materials.sand.poisson_ratio",
            "materials.sand.friction_angle",
            "materials.sand.cohesion",
        ],
        ["initial.position", "initial.velocity", "bodies.velocity", "gravity"],
        [
            "walls.friction",
            "colliders.position",
            "colliders.velocity",
            "colliders.size",
            "colliders.friction",
        ],
        ["actuation.strength", "controller.weights", "controller.frequency"],
    ],
    ids=["elastic", "fluid", "sand", "initial-state", "contact", "actuation"],
)
def test_gradients_match_finite_differences(mixed, group):
    assert_gradcheck(mixed, group)


@pytest.mark.slow
def test_checkpointed_gradients_equal_full_storage(mixed):
    """The checkpointed policy restores each segment from its snapshot, re-runs it, and runs the per-step adjoints
    (each recomputing its grid) back: the same gradients as keeping every frame, with K + 1 frames in memory."""
    value_full, grads_full = mixed.value_and_grad()
    sim = build(storage="checkpointed", k=7)
    value_ckpt, grads_ckpt = sim.value_and_grad()
    assert value_ckpt == pytest.approx(value_full, rel=1e-13)
    for name, g in grads_full.items():
        np.testing.assert_allclose(grads_ckpt[name], g, rtol=1e-9, atol=1e-12 * np.abs(g).max(), err_msg=name)
    # the window holds K + 1 = 8 frames instead of 31; no grid in either
    assert sim.memory_bytes()["window"] * (STEPS + 1) == mixed.memory_bytes()["window"] * 8


@pytest.mark.slow
def test_batch_copies_match_single_rollouts(mixed):
    """Two copies with different jelly stiffness side by side (grid (batch, *res)) equal two single rollouts (of
    the shared `mixed` simulation, whose modulus is put back afterwards)."""
    sim = build(batch=2, per_batch=("materials.jelly.youngs_modulus",))
    p = sim.system.params["materials.jelly.youngs_modulus"]
    p.set(np.array([2e3, 3e3]))
    sim.forward()
    sim.backward()
    x_batch = sim.trajectory()["x"]
    g_batch = p.grad()
    single = mixed
    for b, e in enumerate((2e3, 3e3)):
        single.system.params["materials.jelly.youngs_modulus"].set(e)
        single.forward()
        single.backward()
        np.testing.assert_allclose(x_batch[:, b], single.trajectory()["x"][:, 0], rtol=0, atol=1e-12)
        assert g_batch[b] == pytest.approx(
            single.system.params["materials.jelly.youngs_modulus"].grad(), rel=1e-9
        )
    single.system.params["materials.jelly.youngs_modulus"].set(2e3)


@pytest.mark.slow
def test_gradients_3d_with_box_collider_and_mlp_controller():
    """3D (the 27-node stencil as a runtime loop), an MLP controller fed by the actuator groups' centroids, a moving
    box collider with friction and friction walls."""
    model = mixed_model(dim=3, res=12)
    controller = diffsim.MLP(1, hidden=(4,), n_phases=1, frequency=3.0, seed=0)
    system = MPMSystem(
        model,
        dt=2e-3,
        walls="friction",
        colliders=colliders(3),
        controller=controller,
        actuation_strength=300.0,
    )
    assert not system.unroll
    sim = diffsim.Simulation(system, STEPS, loss=target_loss(system, STEPS))
    sim.forward()
    sim.backward()
    for name in ("colliders.velocity", "colliders.friction", "controller.w0"):
        assert np.abs(system.params[name].grad()).max() > 0, f"test set-up: {name} must matter"
    assert_gradcheck(
        sim,
        [
            "materials.jelly.youngs_modulus",
            "materials.jelly.viscosity",
            "initial.position",
            "bodies.velocity",
            "gravity",
            "colliders.velocity",
            "colliders.friction",
            "actuation.strength",
        ],
    )  # wall friction: checked in 2D (here it barely matters, ~1e-8)
    # Directions only for the MLP: some weights multiply inputs that stay ~0 (a centroid offset along an axis of
    # symmetry); their derivatives, ~1e-13 of the largest, are below what a finite difference resolves.
    assert_gradcheck(sim, ["controller.w0", "controller.b0", "controller.w1"], coordinates=0, directions=3)
