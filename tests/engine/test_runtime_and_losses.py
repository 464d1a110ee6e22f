"""Runtime defaults from the environment, and a user loss written as a Taichi kernel."""

import numpy as np
import pytest
import taichi as ti

import diffsim
from diffsim import runtime
from diffsim.optim.losses import LeafLoss
from tests.conftest import use


def test_environment_gives_the_defaults(monkeypatch):
    monkeypatch.setenv("DIFFSIM_PRECISION", "f64")
    monkeypatch.setenv("DIFFSIM_ARCH", "cpu")
    diffsim.init()
    assert runtime.current() == {"arch": "cpu", "precision": "f64", "debug": False}
    monkeypatch.setenv("DIFFSIM_PRECISION", "f16")
    with pytest.raises(diffsim.DiffsimError, match="unknown precision 'f16'"):
        diffsim.init()
    use("cpu", "f64")


@ti.data_oriented
class HeightAboveLoss(LeafLoss):
    """A user loss: sum over frames of max(0, y - ceiling)^2 for every point (penalise flying too high)."""

    def __init__(self, ceiling: float, every: int = 1):
        super().__init__()
        self.ceiling = ceiling
        self.every = every

    def schedule(self, steps):
        return [(f, 0, 1.0) for f in range(self.every, steps + 1, self.every)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        for b, i in ti.ndrange(x.shape[1], x.shape[2]):
            over = ti.max(x[f, b, i][1] - self.ceiling, 0.0)
            self.value[b] += coef * over * over


def test_user_loss_kernel_composes_and_differentiates():
    use("cpu", "f64")
    model = diffsim.SpringModel(dim=2)
    model.add_particle([0.0, 1.0], velocity=[0.0, 3.0])
    model.add_particle([0.2, 1.0], velocity=[0.0, 2.0])
    model.add_spring(0, 1, stiffness=50.0, damping=0.1)
    system = diffsim.SpringSystem(model, dt=1e-3, ground=None)
    loss = HeightAboveLoss(ceiling=1.1, every=10) + 0.1 * diffsim.FinalPositionLoss(np.zeros((2, 2)))
    sim = diffsim.Simulation(system, 300, loss=loss)
    value = sim.forward()
    x = sim.trajectory()["x"][:, 0]
    expected = np.sum(np.maximum(x[10::10, :, 1] - 1.1, 0) ** 2) + 0.1 * np.mean(np.sum(x[-1] ** 2, axis=-1))
    assert abs(value - expected) < 1e-10 * expected
    report = diffsim.gradcheck(sim, ["initial.velocity", "springs.stiffness"])
    assert report.passed, report.summary()
