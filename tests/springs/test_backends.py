"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree: the same rollout (f32, relative 1e-5) and gradient (relative 1e-4).

The rollout is 100 steps with ground contact and an MLP controller: long enough to exercise every kernel, short
enough that f32 rounding differences between backends are not amplified by the dynamics' sensitivity.
"""

import pytest

import diffsim
from tests.backends import assert_agree, run
from tests.conftest import backend_or_skip, other_backends, use
from tests.springs.bodies import square

STEPS = 100

# Compiling the step kernel for Vulkan takes ~30 s on 2 cores: CI runs these in `make test-slow`.
pytestmark = pytest.mark.slow


def rollout(arch, precision="f32", controller="mlp"):
    use(arch, precision)
    ctrl = (
        diffsim.MLP(2, hidden=(8,), n_phases=2, init_scale=1.5)
        if controller == "mlp"
        else diffsim.OpenLoop(2, STEPS, init=0.4)
    )
    system = diffsim.SpringSystem(
        square(actuated=True),
        dt=2e-3,
        ground=0.0,
        friction=0.6,
        contact_stiffness=3000.0,
        contact_damping=5.0,
        controller=ctrl,
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0)) + diffsim.FinalPositionLoss(
        [[0.2, 0.05]], points=[0]
    )
    sim = diffsim.Simulation(system, STEPS, loss=loss)
    return run(sim)


@pytest.mark.backends
@pytest.mark.parametrize("arch", other_backends())
def test_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    cpu = rollout("cpu")
    other = rollout(arch)
    use("cpu", "f64")
    assert cpu[1]["x"][:, 0, :, 1].min() < 0.0, "contact must be active"
    # velocities are differences of positions: less precise
    assert_agree(cpu, other, loss=1e-5, traj={"x": 1e-5, "v": 1e-4}, grads=1e-4)


@pytest.mark.backends
@pytest.mark.parametrize("arch", other_backends())
def test_f64_gradient_matches_cpu_f64(arch):
    """Open-loop control: Vulkan has no f64 sin/tanh (tmath.py evaluates them in f32), everything else is f64."""
    backend_or_skip(arch)
    cpu = rollout("cpu", "f64", controller="open_loop")
    other = rollout(arch, "f64", controller="open_loop")
    use("cpu", "f64")
    assert_agree(cpu, other, loss=1e-12, grads=1e-10)
