"""Bad input gets a clear error naming the item, never a crash or a silent NaN."""

import numpy as np
import pytest

import diffsim
from diffsim import DiffsimError, SimulationError
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f32():
    use("cpu", "f64")


def pair(mass=1.0, b=1):
    m = diffsim.SpringModel(dim=2)
    m.source = "robot.toml"
    m.add_particle([0, 0], mass=mass)
    m.add_particle([0.1, 0])
    m.add_spring(0, b, stiffness=100.0)
    return m


def test_negative_mass():
    with pytest.raises(DiffsimError, match=r"robot.toml: particles\[0\].mass: must be > 0, got -1"):
        diffsim.SpringSystem(pair(mass=-1.0), dt=1e-3)


def test_spring_naming_missing_particle():
    with pytest.raises(
        DiffsimError, match=r"robot.toml: springs\[0\].b: names particle 7, but there are only 2"
    ):
        diffsim.SpringSystem(pair(b=7), dt=1e-3)


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("nan")])
def test_zero_or_negative_dt(dt):
    with pytest.raises(DiffsimError, match=r"robot.toml: dt: must be > 0"):
        diffsim.SpringSystem(pair(), dt=dt)


def test_target_of_wrong_shape():
    system = diffsim.SpringSystem(pair(), dt=1e-3, ground=None)
    loss = diffsim.PointLoss(np.zeros((10, 3, 2)), every=2)
    with pytest.raises(DiffsimError, match=r"target has shape \(10, 3, 2\), expected \(10, 2, 2\)"):
        diffsim.Simulation(system, 20, loss=loss)
    with pytest.raises(DiffsimError, match=r"target frames must be in \[0, 20\]"):
        diffsim.Simulation(system, 20, loss=diffsim.PointLoss(np.zeros((11, 2, 2)), every=2))


def test_nan_during_rollout_names_step_and_quantity():
    """A time step far past the stability limit blows up; the error names the quantity, the frame and the limit."""
    m = pair()
    m.stiffness[0] = 1e7
    m.velocities[1] = [1.0, 0.0]
    with pytest.warns(UserWarning, match="stability limit"):
        system = diffsim.SpringSystem(m, dt=1e-2, ground=None)
    sim = diffsim.Simulation(system, 400)
    with pytest.raises(SimulationError) as err:
        sim.run()
    msg = str(err.value)
    assert err.value.quantity in ("x", "v", "force")
    assert 0 < err.value.frame <= 400
    # it diverges (past 1e8 x its initial scale) a frame or so before it overflows, and is caught then
    assert msg.startswith(f"diverging {err.value.quantity} at frame {err.value.frame} (")
    assert "dt=0.01 s; spring 0 (stiffness 1e+07 N/m, damping 0 N s/m) needs dt < " in msg


def test_bad_parameter_values_and_names():
    system = diffsim.SpringSystem(pair(), dt=1e-3, ground=None)
    with pytest.raises(DiffsimError, match=r"springs.stiffness: must be > 0 \(log transform\)"):
        system.params["springs.stiffness"].set(-3.0)
    with pytest.raises(DiffsimError, match=r"did you mean 'springs.stiffness'"):
        system.params["springs.stifness"]
    with pytest.raises(DiffsimError, match=r"initial.position: value of shape \(3,\) does not fit"):
        system.params["initial.position"].set([1.0, 2.0, 3.0])
    with pytest.raises(DiffsimError, match="value must be finite"):
        system.params["gravity"].set([0.0, float("nan")])


def test_actuators_without_controller_and_mismatched_controller():
    m = pair()
    m.actuator[0] = 0
    with pytest.raises(DiffsimError, match="actuated but no controller"):
        diffsim.SpringSystem(m, dt=1e-3)
    with pytest.raises(DiffsimError, match="controller has 3 outputs, the body has 1 actuators"):
        diffsim.SpringSystem(m, dt=1e-3, controller=diffsim.OpenLoop(3, 10))


def test_gradcheck_refuses_f32():
    use("cpu", "f32")
    try:
        system = diffsim.SpringSystem(pair(), dt=1e-3, ground=None)
        sim = diffsim.Simulation(system, 5, loss=diffsim.FinalPositionLoss(np.zeros((2, 2))))
        with pytest.raises(DiffsimError, match="gradcheck needs f64"):
            diffsim.gradcheck(sim)
    finally:
        use("cpu", "f64")


def test_system_from_before_reinit_is_refused():
    system = diffsim.SpringSystem(pair(), dt=1e-3, ground=None)
    diffsim.init("cpu", "f64")
    with pytest.raises(DiffsimError, match="built before diffsim.init"):
        diffsim.Simulation(system, 5)


def test_unknown_arch_and_unavailable_backend():
    with pytest.raises(DiffsimError, match="unknown arch 'tpu'"):
        diffsim.init(arch="tpu")
    if "cuda" not in diffsim.available_archs():
        with pytest.raises(DiffsimError, match="backend 'cuda' is not available here; available: cpu"):
            diffsim.init(arch="cuda")
    use("cpu", "f64")
