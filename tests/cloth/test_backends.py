"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree on a cloth: the same rollout
(f32: positions relative 1e-5, velocities 1e-4) and gradient (f64: relative 1e-10; f32: within 1e-3 of the
f64 gradient on each backend).

The cloth is the tumbling, wind-blown 4 x 4 cloth of the gradient tests (membrane, bending with the polynomial
atan2, drag and lift, a pin and a load), plus a sphere collider it falls onto, for 100 steps: every term of the
step kernel runs. The f32 tolerances are those of the springs' backend test: 100 steps are short enough that f32
rounding differences between backends are not amplified by the dynamics.
"""

import numpy as np
import pytest

import diffsim
from diffsim.colliders import Collider
from tests.backends import assert_agree, assert_f32_near_f64, run
from tests.cloth.test_gradients import free_cloth
from tests.conftest import backend_or_skip, other_backends, use

STEPS = 100

# Compiling the step kernel and its adjoint for Vulkan takes tens of seconds on 2 cores: `make test-slow`.
pytestmark = [pytest.mark.slow, pytest.mark.backends]


def rollout(arch, precision):
    use(arch, precision)
    system = free_cloth()
    system = type(system)(
        system.model,
        dt=system.dt,
        wind=(1.0, -0.5, 0.3),
        drag=0.3,
        lift=0.5,
        colliders=[Collider("sphere", position=(0.0, 0.0, 0.3), size=[0.15], friction=0.5)],
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.5, 0.2)) + diffsim.FinalPositionLoss(
        [[0.1, 0.0, 0.3]], points=[0]
    )
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    return run(sim)


@pytest.mark.parametrize("arch", other_backends())
def test_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    cpu64 = rollout("cpu", "f64")
    cpu32 = rollout("cpu", "f32")
    other32 = rollout(arch, "f32")
    other64 = rollout(arch, "f64")
    use("cpu", "f64")
    # the set-up: the cloth reaches the sphere, so contact and friction are in the comparison
    assert np.linalg.norm(cpu64[1]["x"][-1, 0] - np.array([0.0, 0.0, 0.3]), axis=-1).min() < 0.16
    # f64: the same arithmetic on both backends, to rounding
    assert_agree(cpu64, other64, loss=1e-12, grads=1e-10)
    # f32 rollouts
    assert_agree(cpu32, other32, loss=1e-5, traj={"x": 1e-5, "v": 1e-4})
    # f32 gradients: each backend's against the f64 gradient, within 1e-3. The f64 comparison above is the check
    # that the backends compute the same thing; this one is that f32 gives f32-quality gradients everywhere. The
    # worst parameter is the Poisson ratio, whose gradient is ~1000x smaller than the terms it sums: measured
    # errors 5e-5 on the CPU and 2e-4 on Vulkan (whose f32 division and square root are not correctly rounded).
    assert_f32_near_f64(cpu64, cpu32, other32, rollouts=False)
