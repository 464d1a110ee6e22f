"""gradcheck must catch a wrong gradient, not only confirm right ones."""

import math

import numpy as np
import pytest
import taichi as ti

import diffsim
from diffsim.engine.state import FieldSpec
from diffsim.engine.system import System
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


@ti.data_oriented
class Decay(System):
    """x' = x - dt * rate * x^2 (one scalar per copy). With `broken=True` the step overwrites a value it has read,
    which Taichi's reverse mode silently gets wrong (docs/developing.md, Taichi rule 1): gradcheck has to notice."""

    kind = "decay"

    def __init__(self, broken: bool):
        super().__init__(batch=1)
        self.broken = broken
        self.rate = self.add_param("rate", (), 0.7)
        self.x0 = self.add_param("initial.x", (), 1.3)

    def field_specs(self):
        return [FieldSpec("x", (1,)), FieldSpec("tmp", (1,), kind="scratch")]

    @ti.kernel
    def _initialize(self, s: ti.template()):
        for b in range(1):
            s.x[0, b, 0] = self.x0.field[0]

    def initialize(self, s):
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)

    def masses(self):
        return np.ones((1, 1))

    def stable_dt(self):
        return math.inf, "nothing (x' = x - dt rate x^2 is not stiff at these values)"

    def instability_hint(self):
        return ""

    @ti.kernel
    def _step(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        for b in range(1):
            s.tmp[f, b, 0] = s.x[f, b, 0]
            if ti.static(self.broken):
                s.tmp[f, b, 0] = s.tmp[f, b, 0] * s.tmp[f, b, 0]  # overwrite after read: wrong adjoint
            else:
                s.tmp[f, b, 0] = s.x[f, b, 0] * s.x[f, b, 0]
            s.x[f + 1, b, 0] = s.x[f, b, 0] - 0.01 * self.rate.field[0] * s.tmp[f, b, 0]


def sim_for(broken):
    system = Decay(broken)
    return diffsim.Simulation(system, 20, loss=diffsim.FinalPositionLoss(np.array([[0.5]])))


def test_gradcheck_passes_a_correct_system():
    report = diffsim.gradcheck(sim_for(False))
    assert report.passed, report.summary()
    assert report.params["rate"].max_rel_error < 1e-8


def test_gradcheck_fails_a_wrong_gradient():
    report = diffsim.gradcheck(sim_for(True))
    assert not report.passed
    assert report.params["initial.x"].max_rel_error > 1e-3
    d = report.to_dict()
    assert d["passed"] is False and not d["params"]["initial.x"]["passed"]
