"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree on MPM.

The set-up: an actuated, viscous neo-Hookean jelly block (two actuators, open-loop controls) and a fluid blob, both
thrown down onto a Coulomb-friction floor (32^2 grid, 176 particles, 20 steps of 2 ms; the particles reach the
floor's band, so wall contact and friction are in the comparison). On Vulkan P2G's atomic adds run in parallel, in
no fixed order, and the neo-Hookean log(J) and the fluid's Tait pressure J^-gamma = exp(-gamma log J) are evaluated
in f32 in f64 mode (SPIR-V has no f64 log or exp: docs/developing.md, rule 9).

- f64, full set-up: rollout and gradients relative 2e-6. Measured: loss 1.4e-9, positions 8e-10,
  velocities 6e-8, affine velocities C 2e-7, gradients up to 2.1e-7 (walls.friction). The CPU with the same f32
  transcendentals forced (a probe, not kept as a test) differs from the CPU in f64 by the same amounts (C 1.3e-7,
  initial.position gradient 2e-7), so these are the f32 log/exp, not a backend difference.
- f64, jelly alone with Poisson ratio 0 (Lame lambda = 0, so lambda log(J) = 0 exactly): no transcendental in the
  rollout, so the two backends compute the same arithmetic, up to the summation order of the atomic adds: 1e-10
  (as cloth). The Poisson ratio's own gradient still multiplies log(J), in f32 on Vulkan: 1e-6 for it.
- f32: each backend's rollout and gradients within 1e-3 of the CPU's f64 ones (as cloth and smoke).
"""

import numpy as np
import pytest

import diffsim
from diffsim.systems.mpm import MPMModel, MPMSystem
from tests.backends import assert_agree, assert_f32_near_f64, run
from tests.conftest import backend_or_skip, other_backends, use
from tests.mpm.test_gradients import WALLS, target_loss

STEPS = 20

# Each backend compiles the P2G/grid/G2P step and its custom adjoint: about a minute per precision on 2 loaded
# cores. `make test-slow`.
pytestmark = [pytest.mark.slow, pytest.mark.backends]


def rollout(arch, precision, fluid=True, poisson_ratio=0.3):
    use(arch, precision)
    m = MPMModel(dim=2, res=32, dx=1 / 32, ppc=4, source="backends")
    m.add_material(
        "jelly", "elastic", density=1000.0, youngs_modulus=3e3, poisson_ratio=poisson_ratio, viscosity=0.3
    )
    m.add_box([0.2, 0.105], [0.45, 0.23], "jelly", velocity=[0.7, -1.2], actuator=0)
    m.actuator_ids[0][: m.n_particles // 2] = 1
    if fluid:
        m.add_material("water", "fluid", density=1000.0, bulk_modulus=2e3, viscosity=0.8)
        m.add_box([0.6, 0.105], [0.75, 0.2], "water", velocity=[-0.3, -1.2])
    system = MPMSystem(
        m,
        dt=2e-3,
        walls=WALLS,
        wall_friction=0.4,
        controller=diffsim.OpenLoop(2, STEPS, init=0.3),
        actuation_strength=400.0,
    )
    sim = diffsim.Simulation(system, STEPS, loss=target_loss(system, STEPS, every=4))
    floor = system.bound * system.dx
    return (*run(sim, ("x", "v", "C", "F")), floor)


@pytest.mark.parametrize("arch", other_backends())
def test_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    *cpu64, floor = rollout("cpu", "f64")
    *other64, _ = rollout(arch, "f64")
    *cpu32, _ = rollout("cpu", "f32")
    *other32, _ = rollout(arch, "f32")
    use("cpu", "f64")
    _, t64, g64 = cpu64
    assert t64["x"][-1, 0, :, 1].min() < floor, "the set-up: particles reach the floor"
    assert np.abs(g64["walls.friction"]).max() > 0, "the set-up: floor friction acts"
    assert_agree(cpu64, other64, loss=2e-6, traj=2e-6, grads=2e-6)
    assert_f32_near_f64(cpu64, cpu32, other32)


@pytest.mark.parametrize("arch", other_backends())
def test_f64_without_transcendentals_agrees_to_rounding(arch):
    backend_or_skip(arch)
    *cpu64, floor = rollout("cpu", "f64", fluid=False, poisson_ratio=0.0)
    *other64, _ = rollout(arch, "f64", fluid=False, poisson_ratio=0.0)
    use("cpu", "f64")
    assert cpu64[1]["x"][-1, 0, :, 1].min() < floor, "the set-up: particles reach the floor"
    poisson = lambda name: 1e-6 if name.endswith("poisson_ratio") else 1e-10  # its gradient multiplies log(J)
    assert_agree(cpu64, other64, loss=1e-12, traj=1e-10, grads=poisson)
