"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree on smoke: the full-featured 2D
set-up of the gradient tests (two scalars, obstacle, source, buoyancy, viscosity, vorticity confinement, force
controls, open top) for 12 steps, with the pressure solved to 1e-10 1/s.

f64: rollout and gradient relative 1e-8 (the solves stop at a tolerance, and the two backends' residuals may cross
it at different iterations: the difference is the solver's stopping error, ~1e-10 of the field). f32: each
backend's rollout and gradient within 1e-3 of the f64 ones (the solve stops at f32 rounding of the residual).
"""

import pytest

import diffsim
from tests.backends import assert_agree, assert_f32_near_f64, run
from tests.conftest import backend_or_skip, other_backends, use
from tests.smoke.cases import full_featured
from tests.smoke.test_gradients import density_loss

STEPS = 12

# Each backend compiles the step, the solver and their adjoints: tens of seconds on 2 cores. `make test-slow`.
pytestmark = [pytest.mark.slow, pytest.mark.backends]


def rollout(arch, precision):
    use(arch, precision)
    system = full_featured(2, "semi_lagrangian", n=10)
    sim = diffsim.Simulation(system, STEPS, loss=density_loss(system, STEPS))
    return run(sim, ("velocity", "scalars"))


@pytest.mark.parametrize("arch", other_backends())
def test_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    cpu64 = rollout("cpu", "f64")
    other64 = rollout(arch, "f64")
    cpu32 = rollout("cpu", "f32")
    other32 = rollout(arch, "f32")
    use("cpu", "f64")
    assert_agree(cpu64, other64, loss=1e-8, traj=1e-8, grads=1e-8)
    assert_f32_near_f64(cpu64, cpu32, other32)
