"""Serial and parallel loops. On the CPU, small loops run serially (`runtime.serial_loops`); GPUs run every loop
in parallel. Both must give the same rollouts and gradients: each system's parallel path is checked here on the
CPU against its serial one, in f64 (the parallel adjoint adds with atomics, in another order: rounding only)."""

import sys

import numpy as np
import pytest

import diffsim
from diffsim import bench, runtime
from tests.backends import assert_agree, run
from tests.conftest import use


def _springs():
    """The springs backend test's set-up: an actuated square on the ground (contact, friction), an MLP, 100 steps."""
    from tests.springs.test_backends import rollout

    return rollout("cpu", "f64")


def _rigid():
    """The rigid gradient tests' 2D mechanism: ground and body contact, a limited hinge with a PD motor, a spring;
    150 steps."""
    from tests.rigid.test_gradients import STEPS, loss_2d, mechanism_2d

    system = mechanism_2d()
    return run(diffsim.Simulation(system, STEPS, loss=loss_2d(system)))


def _mpm():
    """MPM's backend-agreement set-up: a jelly and a fluid blob thrown onto a friction floor, 20 steps."""
    from tests.mpm.test_backends import rollout

    loss, traj, grads, _floor = rollout("cpu", "f64")
    return loss, traj, grads


#: each case's (loss, trajectory, gradients) of one forward and backward pass
CASES = {
    "springs": _springs,
    "rigid": _rigid,
    "mpm": _mpm,
    **{name: (lambda name=name: run(bench.CASES[name]()[0])) for name in ("cloth17", "smoke64")},
}


def test_loops_run_serially_only_on_the_cpu_and_below_the_threshold(monkeypatch):
    use("cpu", "f64")
    assert runtime.serial_loops(999, 1000)
    assert not runtime.serial_loops(1000, 1000)
    for gpu in ("cuda", "vulkan", "metal"):  # a serial loop there runs on one GPU thread
        monkeypatch.setitem(runtime._state, "arch", gpu)
        assert not runtime.serial_loops(1, 1000), gpu


@pytest.mark.parametrize(
    "case",
    [
        "springs",
        pytest.param("rigid", marks=pytest.mark.slow),  # compiling its adjoint twice: about 2 minutes
        pytest.param("cloth17", marks=pytest.mark.slow),
        pytest.param("smoke64", marks=pytest.mark.slow),
        pytest.param("mpm", marks=pytest.mark.slow),
    ],
)
def test_parallel_loops_give_the_serial_rollout_and_gradients(case, monkeypatch):
    use("cpu", "f64")
    serial = CASES[case]()
    asked = set()

    def parallel_loops(elements, cpu_below):
        asked.add(sys._getframe(1).f_globals["__name__"])  # the module deciding
        return False

    monkeypatch.setattr(runtime, "serial_loops", parallel_loops)
    parallel = CASES[case]()
    kind = "springs" if case == "springs" else case.rstrip("0123456789")
    assert f"diffsim.systems.{kind}.system" in asked, asked
    if kind in ("springs", "rigid"):  # their losses: centre of mass, points
        assert "diffsim.optim.losses" in asked, asked
    if kind == "smoke":
        assert "diffsim.systems.smoke.solver" in asked, asked
    assert np.isfinite(serial[0]) and serial[0] != 0.0
    assert_agree(serial, parallel, loss=1e-12, traj=1e-10, grads=1e-9)
