"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree on smoke: the full-featured 2D
set-up of the gradient tests (two scalars, obstacle, source, buoyancy, viscosity, vorticity confinement, force
controls, open top) for 12 steps, with the pressure solved to 1e-10 1/s.

f64: rollout and gradient relative 1e-8 (the solves stop at a tolerance, and the two backends' residuals may cross
it at different iterations: the difference is the solver's stopping error, ~1e-10 of the field). f32: each
backend's rollout and gradient within 1e-3 of the f64 ones (the solve stops at f32 rounding of the residual).
"""

import numpy as np
import pytest

import diffsim
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
    value, grads = sim.value_and_grad()
    traj = sim.trajectory()
    return value, {k: traj[k] for k in ("velocity", "scalars")}, grads


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@pytest.mark.parametrize("arch", other_backends())
def test_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    l64, t64, g64 = rollout("cpu", "f64")
    l_o64, t_o64, g_o64 = rollout(arch, "f64")
    l32, t32, g32 = rollout("cpu", "f32")
    l_o32, t_o32, g_o32 = rollout(arch, "f32")
    use("cpu", "f64")
    assert abs(l_o64 - l64) <= 1e-8 * abs(l64)
    for k in t64:
        assert rel(t_o64[k], t64[k]) < 1e-8, k
    for name, g in g64.items():
        assert rel(g_o64[name], g) < 1e-8, name
    errors = {}
    for name, g in g64.items():
        errors[name] = (rel(g32[name], g), rel(g_o32[name], g))
        assert max(errors[name]) < 1e-3, (name, errors[name])
    for k in t64:
        assert max(rel(t32[k], t64[k]), rel(t_o32[k], t64[k])) < 1e-3, k
    assert max(abs(l32 - l64), abs(l_o32 - l64)) <= 1e-3 * abs(l64)
